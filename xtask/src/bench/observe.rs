//! Evidence of which path the packets took, read from the topologies
//! before they are removed, for the report.
use serde_json::{json, Map, Value};

use super::{
    ebridge_node, ipv6, linux_bridge, natmap, routing, scenario::Scenario, topology::Topology,
};

pub fn observe(topologies: &[Topology]) -> Value {
    let mut obs = Map::new();
    for t in topologies {
        let key = t.setup.key();
        if t.scenario == Scenario::Routing {
            obs.insert(key.into(), routing::observe::observe(t));
        } else if t.chain.is_some() {
            let count = linux_bridge::conntrack_count(t);
            println!(
                "{key}: {} conntrack entries in the node namespace",
                count.map_or("?".into(), |c| c.to_string())
            );
            obs.insert(
                key.into(),
                json!({
                    "nf_conntrack_count": count,
                    "iptables_nat_postrouting": linux_bridge::counters(t, "nat", "POSTROUTING"),
                    "iptables_nat_hostport_dnat": linux_bridge::counters(t, "nat", "CNI-HOSTPORT-DNAT"),
                }),
            );
        } else if t.setup.is_docker() {
            let count = linux_bridge::conntrack_count(t);
            println!(
                "{key}: {} conntrack entries in the node namespace",
                count.map_or("?".into(), |c| c.to_string())
            );
            let mut o = json!({
                "nf_conntrack_count": count,
                "iptables_forward": linux_bridge::counters(t, "filter", "FORWARD"),
            });
            if t.scenario.base() != Scenario::C2c {
                o["iptables_nat_postrouting"] =
                    json!(linux_bridge::counters(t, "nat", "POSTROUTING"));
                o["iptables_nat_docker"] = json!(linux_bridge::counters(t, "nat", "DOCKER"));
            }
            obs.insert(key.into(), o);
        } else if let Some(bridge) = &t.ebridge_bridge {
            let stats = ebridge_node::stats(t);
            if let Some(s) = &stats {
                let totals: Vec<String> = ebridge_node::verdict_totals(s)
                    .iter()
                    .map(|(v, n)| format!("{v} {n}"))
                    .collect();
                println!("{key}: datapath packets {}", totals.join(", "));
            }
            // The measured family's table (nat6 in the IPv6 scenarios).
            let (entries, map) = match t.scenario.base() {
                Scenario::C2c => (None, "nat"),
                _ if t.scenario.is_v6() => (ipv6::nat6_count(bridge).ok(), "nat6"),
                _ => (natmap::count(bridge).ok(), "nat"),
            };
            if let Some(n) = entries {
                println!("{key}: {n} entries in the {map} map at the end");
            }
            if let Some(mem) = t.notes.get("map_memory").and_then(|m| m.as_object()) {
                let shown: Vec<String> = mem
                    .iter()
                    .map(|(name, m)| {
                        format!(
                            "{name} {:.1} MiB",
                            m["bytes_memlock"].as_f64().unwrap_or(0.0) / (1024.0 * 1024.0)
                        )
                    })
                    .collect();
                println!(
                    "{key}: map memory (bpftool bytes_memlock): {}",
                    shown.join(", ")
                );
            }
            let agent_log = t.agent.as_deref().map(|a| a.log());
            obs.insert(
                key.into(),
                json!({
                    "stats": stats,
                    "nat_entries_at_end": entries,
                    "nat_map": map,
                    "agent_cpu_secs_total": t.agent.as_deref().map(|a| a.cpu_secs()),
                    "agent_log": agent_log,
                }),
            );
        }
    }
    Value::Object(obs)
}
