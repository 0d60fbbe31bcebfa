//! The node's uplink: a veth from the node namespace (`uplink0`,
//! 198.51.100.1/24, default route via the outside) to the outside
//! namespace (`eth0`, 198.51.100.2/24).
use anyhow::Result;

use super::aim::{NODE_IP, OUTSIDE_IP};
use crate::util::sh;

pub const UPLINK: &str = "uplink0";

/// Links the existing namespaces `node` and `outside`.
pub fn build(node: &str, outside: &str) -> Result<()> {
    sh(
        "ip",
        &[
            "-n", node, "link", "add", UPLINK, "type", "veth", "peer", "name", "eth0", "netns",
            outside,
        ],
    )?;
    let node_cidr = format!("{NODE_IP}/24");
    sh(
        "ip",
        &["-n", node, "addr", "add", &node_cidr, "dev", UPLINK],
    )?;
    sh("ip", &["-n", node, "link", "set", UPLINK, "up"])?;
    address_outside(outside)?;
    let via = OUTSIDE_IP.to_string();
    sh("ip", &["-n", node, "route", "add", "default", "via", &via])?;
    Ok(())
}

/// The outside's `eth0`: OUTSIDE_IP.
pub fn address_outside(outside: &str) -> Result<()> {
    let cidr = format!("{OUTSIDE_IP}/24");
    sh("ip", &["-n", outside, "addr", "add", &cidr, "dev", "eth0"])?;
    sh("ip", &["-n", outside, "link", "set", "eth0", "up"])?;
    Ok(())
}
