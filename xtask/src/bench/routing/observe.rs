//! What each node shows at the end, for the report and the console: how
//! much the node's own IP stack forwarded, what conntrack holds, and the
//! datapath's counters (ebridge's verdicts, host-gw's rule listings).
//! For plain-routing, nothing may have been tracked: a conntrack entry
//! there would mean netfilter was in the path after all.
use serde_json::{json, Map, Value};

use super::{evidence::forwarded, nodes};
use crate::bench::{ebridge_node, linux_bridge, scenario::Setup, topology::Topology};

pub fn observe(t: &Topology) -> Value {
    let key = t.setup.key();
    let mut per_node = Map::new();
    for n in nodes(t) {
        let fwd = forwarded(n.ns).ok();
        let tracked = linux_bridge::conntrack_count_in(n.ns);
        let mut o = json!({
            "forw_datagrams": fwd,
            "nf_conntrack_count": tracked,
        });
        let mut line = format!(
            "{key} {}: ForwDatagrams {}, {} conntrack entries",
            n.role,
            fwd.map_or("?".into(), |v| v.to_string()),
            tracked.map_or("?".into(), |c| c.to_string())
        );
        if let Some(bridge) = n.ebridge_bridge {
            if let Ok(stats) = ebridge_node::stats_of(n.ns, bridge) {
                let totals: Vec<String> = ebridge_node::verdict_totals(&stats)
                    .iter()
                    .map(|(v, n)| format!("{v} {n}"))
                    .collect();
                line += &format!("; datapath packets {}", totals.join(", "));
                o["stats"] = stats;
            }
        }
        if t.setup == Setup::HostGw {
            o["iptables_forward"] = json!(linux_bridge::counters_in(n.ns, "filter", "FORWARD"));
            o["iptables_nat_postrouting"] =
                json!(linux_bridge::counters_in(n.ns, "nat", "POSTROUTING"));
        }
        if t.setup == Setup::PlainRouting && tracked.is_some_and(|c| c > 0) {
            line += " (NOT EXPECTED: plain routing has no netfilter hook)";
        }
        println!("{line}");
        per_node.insert(n.role.into(), o);
    }
    let mut out = json!({ "nodes": per_node });
    if let Some(a) = t.agent.as_deref() {
        out["agent_cpu_secs_total"] = json!(a.cpu_secs());
        out["agent_log"] = json!(a.log());
    }
    out
}
