//! Proof, checked on every sample, that the packets took the path under
//! test: the datapath's own counters must have moved by at least what the
//! load tools counted. A setup whose programs were detached, or whose
//! rules were skipped, would otherwise be measured as some other path
//! (ebridge without its programs looks like bridge-nf-off) and nobody
//! would notice.
//!
//! - ebridge: `ebridge show stats --json`, the verdicts of the measured
//!   direction (c2c redirect-peer; nat snat-out; publish dnat-in +
//!   revnat-in + xdp-revnat-in) >= datagrams received / round trips /
//!   connections (and bytes >= the stream's bytes);
//! - Docker's setups: `iptables-save -c` in the node, `-A FORWARD -j
//!   DOCKER-USER` (every forwarded packet passes it) likewise, and for the
//!   connection test the MASQUERADE (nat) or the measured port's DNAT rule
//!   (publish) >= connections: each one was a new conntrack entry that
//!   took the NAT decision; in the IPv6 scenarios the same rules of
//!   `ip6tables-save -c` (ebridge's reasons are the same for both
//!   families);
//! - podman on the reference CNI chain (cni.rs): the server container's
//!   host veth transmitted at least that many packets (the Linux bridge
//!   forwarded them), and for the connection test the chain's rule that
//!   sees each new flow >= connections (cni/chain_evidence.rs);
//! - routing (routing/evidence.rs): both nodes' counters, the client's
//!   for the packets leaving its pod, the server's for those reaching its
//!   pod (ebridge routed-out / routed-in; the host-gw node's FORWARD
//!   rules; plain routing's ForwDatagrams);
//! - the bare veth and bridge-nf-off have no counter to read.
use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use serde_json::{json, Value};

use super::{
    aim::{CONTAINER_IP, PORT_TCP_CRR, PUBLISH_OFFSET, SUBNET},
    ebridge_node,
    iptables::Published,
    ipv6, routing,
    scenario::Scenario,
    topology::Topology,
};

/// Counter name -> (packets, bytes).
#[derive(Clone, Default)]
pub struct Counters(pub(super) BTreeMap<String, (u64, u64)>);

impl Counters {
    fn delta(&self, before: &Counters, name: &str) -> Option<(u64, u64)> {
        let (p1, b1) = *self.0.get(name)?;
        let (p0, b0) = before.0.get(name).copied().unwrap_or((0, 0));
        Some((p1.saturating_sub(p0), b1.saturating_sub(b0)))
    }

    /// Packets of `name` (an ebridge reason) since `before`; 0 if never seen.
    pub fn packets_since(&self, before: &Counters, name: &str) -> u64 {
        self.delta(before, name).map_or(0, |d| d.0)
    }
}

/// The counters of a setup now (empty for setups that have none).
pub fn snapshot(t: &Topology) -> Result<Counters> {
    if t.scenario == Scenario::Routing {
        return Ok(Counters(routing::evidence::snapshot(t)?));
    }
    if let Some(chain) = &t.chain {
        return Ok(Counters(chain.snapshot()?));
    }
    if t.ebridge_bridge.is_some() {
        let stats = ebridge_node::stats(t).context("cannot read ebridge show stats --json")?;
        let mut c = BTreeMap::new();
        for row in stats.as_array().into_iter().flatten() {
            let reason = row["reason"].as_str().unwrap_or("?").to_string();
            let packets = row["packets"].as_u64().unwrap_or(0);
            let bytes = row["bytes"].as_u64().unwrap_or(0);
            c.insert(reason, (packets, bytes));
        }
        return Ok(Counters(c));
    }
    if t.setup.is_docker() {
        let node = t
            .node_ns
            .as_deref()
            .context("Docker setup without a node")?;
        let net = format!("--net=/run/netns/{node}");
        let save = format!("{}-save", ipv6::family(t.scenario).tool());
        let text = crate::util::sh("nsenter", &[&net, "--", &save, "-c"])?;
        return Ok(Counters(parse_save(&text)));
    }
    Ok(Counters::default())
}

/// `iptables-save -c` lines `[P:B] -A CHAIN SPEC` as "table -A CHAIN SPEC".
pub fn parse_save(text: &str) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    let mut table = "";
    for line in text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.trim();
            continue;
        }
        let Some(rest) = line.strip_prefix('[') else {
            continue;
        };
        let Some((counts, rule)) = rest.split_once("] ") else {
            continue;
        };
        let Some((p, b)) = counts.split_once(':') else {
            continue;
        };
        if let (Ok(p), Ok(b)) = (p.parse(), b.parse()) {
            out.insert(format!("{table} {}", rule.trim()), (p, b));
        }
    }
    out
}

/// One required movement of a counter.
pub(super) struct Need {
    /// Counter names whose deltas add up.
    pub counters: Vec<String>,
    pub packets: u64,
    pub bytes: Option<u64>,
}

pub const FORWARD_ALL: &str = "filter -A FORWARD -j DOCKER-USER";

pub fn masquerade_rule() -> String {
    format!("nat -A POSTROUTING -s {SUBNET} ! -o docker0 -j MASQUERADE")
}

fn measured_dnat_rule(v6: bool) -> String {
    let ip = if v6 {
        ipv6::mirror(CONTAINER_IP).into()
    } else {
        CONTAINER_IP.into()
    };
    let p = Published {
        host_port: PORT_TCP_CRR - PUBLISH_OFFSET,
        ip,
        ctr_port: PORT_TCP_CRR,
        proto: "tcp",
    };
    let (table, rule) = &p.rules()[1];
    format!("{table} {rule}")
}

/// ebridge's verdicts on the measured (client to server) direction, the
/// same reasons for both families.
pub fn ebridge_forward_reasons(scenario: Scenario) -> &'static [&'static str] {
    match scenario {
        Scenario::C2c | Scenario::C2c6 => &["redirect-peer"],
        Scenario::Nat | Scenario::Nat6 => &["snat-out"],
        Scenario::Publish | Scenario::Publish6 | Scenario::Cni => {
            &["dnat-in", "revnat-in", "xdp-revnat-in"]
        }
        Scenario::Routing => &["routed-out"],
    }
}

fn needs(t: &Topology, new_flows: bool, packets: u64, bytes: Option<u64>) -> Vec<Need> {
    if t.scenario == Scenario::Routing {
        return routing::evidence::needs(t, new_flows, packets, bytes);
    }
    let need = |names: Vec<String>, packets| Need {
        counters: names,
        packets,
        bytes,
    };
    if let Some(chain) = &t.chain {
        let mut out = vec![need(vec![chain.per_packet().to_string()], packets)];
        if let Some(rule) = chain.new_flow_rule().filter(|_| new_flows) {
            out.push(Need {
                counters: vec![rule.to_string()],
                packets,
                bytes: None,
            });
        }
        return out;
    }
    if t.ebridge_bridge.is_some() {
        let names = ebridge_forward_reasons(t.scenario.path(t.setup))
            .iter()
            .map(|s| s.to_string())
            .collect();
        return vec![need(names, packets)];
    }
    if !t.setup.is_docker() {
        return Vec::new();
    }
    let mut out = vec![need(vec![FORWARD_ALL.into()], packets)];
    if new_flows {
        let v6 = t.scenario.is_v6();
        let rule = match t.scenario.base() {
            Scenario::Nat if v6 => Some(ipv6::masquerade_rule6()),
            Scenario::Nat => Some(masquerade_rule()),
            Scenario::Publish => Some(measured_dnat_rule(v6)),
            _ => None,
        };
        if let Some(rule) = rule {
            out.push(Need {
                counters: vec![rule],
                packets,
                bytes: None,
            });
        }
    }
    out
}

/// Checks that `after - before` covers what was carried. `new_flows`:
/// every unit was a new connection (the connection tests). Returns the
/// deltas for the report and what fell short.
pub fn check(
    t: &Topology,
    new_flows: bool,
    carried: u64,
    carried_bytes: Option<u64>,
    before: &Counters,
    after: &Counters,
) -> (Value, Vec<String>) {
    let mut shown = Vec::new();
    let mut problems = Vec::new();
    for n in needs(t, new_flows, carried, carried_bytes) {
        let present: Vec<&String> = n
            .counters
            .iter()
            .filter(|c| after.0.contains_key(*c))
            .collect();
        if present.is_empty() {
            problems.push(format!(
                "{}: no counter {} on this setup",
                t.setup.key(),
                n.counters.join(" / ")
            ));
            continue;
        }
        let (mut p, mut b) = (0, 0);
        for c in &present {
            let (dp, db) = after.delta(before, c).unwrap_or((0, 0));
            p += dp;
            b += db;
        }
        let short_p = p < n.packets;
        let short_b = n.bytes.is_some_and(|need| b < need);
        shown.push(json!({
            "counters": n.counters,
            "packets": p,
            "bytes": b,
            "need_packets": n.packets,
            "need_bytes": n.bytes,
            "ok": !short_p && !short_b,
        }));
        if short_p || short_b {
            problems.push(format!(
                "{}: the path under test was not taken: {} moved by {p} packets / {b} bytes, the tools counted {} / {}",
                t.setup.key(),
                n.counters.join(" + "),
                n.packets,
                n.bytes.map_or("-".into(), |x| x.to_string())
            ));
        }
    }
    (Value::Array(shown), problems)
}

#[cfg(test)]
mod tests {
    use super::parse_save;

    #[test]
    fn reads_iptables_save_counters() {
        let text = "*nat\n:PREROUTING ACCEPT [0:0]\n[5:300] -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE\nCOMMIT\n*filter\n[7:420] -A FORWARD -j DOCKER-USER\nCOMMIT\n";
        let c = parse_save(text);
        assert_eq!(
            c.get("nat -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE"),
            Some(&(5, 300))
        );
        assert_eq!(c.get("filter -A FORWARD -j DOCKER-USER"), Some(&(7, 420)));
        assert_eq!(c.len(), 2);
    }
}
