//! Which build a node runs, proven rather than assumed, at the start and
//! at the end of the measurements:
//!
//! - functionally: `ebridge monitor --type drop` attached while container s
//!   sends spoofed frames (a short storm at a low rate): the build with
//!   hooks shows them as `drop-spoofed-ip` events; the build without shows
//!   nothing and counts no loss, while `drop-spoofed-ip` moves by every
//!   frame sent (the frames were dropped, the event path never entered);
//! - statically: the program on container a's host veth references the
//!   monitor's maps (events, lease, budget) in the build with hooks and
//!   none of them in the build without.
//!
//! Every sample also checks that the program on a's host veth is still the
//! one proven here (same id and tag); a sample or node that cannot show
//! which build it measured is invalid.
use anyhow::Result;
use serde_json::{json, Value};

use super::{
    builds::Kind,
    node::Node,
    probe::{self, Identity},
    storm::{self, Attached},
};
use crate::bench::{evidence, measure::Ctx};

const PROOF_PPS: u64 = 2000;
const PROOF_SECS: f64 = 1.0;

pub struct Proof {
    pub kind: Kind,
    pub identity: Identity,
    pub sent: u64,
    pub dropped: u64,
    pub printed: storm::Printed,
    /// Why it does not prove the build (empty: it does).
    pub problems: Vec<String>,
}

impl Proof {
    pub fn to_json(&self) -> Value {
        json!({
            "build": self.kind.key(),
            "program_on_client_veth": self.identity.to_json(),
            "spoofed_frames_sent": self.sent,
            "drop_spoofed_ip_moved": self.dropped,
            "monitor": self.printed.to_json(),
            "proven": self.problems.is_empty(),
            "problems": self.problems,
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "{}: {} spoofed frames sent, drop-spoofed-ip +{}, the monitor printed {} of them and reported {} lost; program {} (tag {}, {} bytes JITed) {} the monitor maps",
            self.kind.key(),
            self.sent,
            self.dropped,
            self.printed.storm_drops,
            self.printed.lost,
            self.identity.prog_id,
            self.identity.tag,
            self.identity.jited_bytes,
            if self.identity.uses_monitor_maps {
                "uses"
            } else {
                "does not use"
            }
        )
    }
}

pub fn prove(node: &Node, kind: Kind, ctx: &Ctx) -> Result<Proof> {
    let t = node.c2c.as_ref().expect("the hooks nodes have views");
    probe::wait_lease_gone(&node.bridge)?;
    let identity = probe::identity(&node.bridge, &node.client_veth)?;
    let mon = Attached::start(node, &["--type", "drop"])?;
    storm::settle();
    let before = evidence::snapshot(t)?;
    let s = storm::start(node, ctx, PROOF_PPS, PROOF_SECS)?;
    let report = storm::finish(s, PROOF_SECS)?;
    storm::settle();
    let printed = mon.finish()?;
    let after = evidence::snapshot(t)?;
    let sent = report["sent"].as_u64().unwrap_or(0);
    let dropped = after.packets_since(&before, "drop-spoofed-ip");
    let mut problems = Vec::new();
    if sent == 0 || dropped < sent {
        problems.push(format!(
            "drop-spoofed-ip moved by {dropped} for {sent} spoofed frames"
        ));
    }
    match kind {
        Kind::Hooks => {
            if printed.storm_drops == 0 {
                problems.push("the monitor showed none of the dropped frames".into());
            }
            if !identity.uses_monitor_maps {
                problems.push("the endpoint program does not use the monitor's maps".into());
            }
        }
        Kind::NoHooks => {
            if printed.events > 0 || printed.lost > 0 {
                problems.push(format!(
                    "the monitor showed {} events and {} lost: hooks are compiled in",
                    printed.events, printed.lost
                ));
            }
            if identity.uses_monitor_maps {
                problems.push("the endpoint program uses the monitor's maps".into());
            }
        }
    }
    Ok(Proof {
        kind,
        identity,
        sent,
        dropped,
        printed,
        problems,
    })
}
