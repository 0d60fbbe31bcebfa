//! Evidence of which path the packets took, read from the topologies
//! before they are removed, for the report.
use serde_json::{json, Map, Value};

use super::{
    ebridge_node, linux_bridge,
    topology::{Setup, Topology},
};

/// Evidence of which path the packets took, for the report.
pub fn observe(topologies: &[Topology]) -> Value {
    let mut obs = Map::new();
    for t in topologies {
        match t.setup {
            Setup::DockerBridge => {
                let count = linux_bridge::conntrack_count(t);
                println!(
                    "docker-bridge: {} conntrack entries in the node namespace",
                    count.map_or("?".into(), |c| c.to_string())
                );
                obs.insert(
                    t.setup.key().into(),
                    json!({
                        "nf_conntrack_count": count,
                        "iptables_forward": linux_bridge::forward_counters(t),
                    }),
                );
            }
            Setup::Ebridge => {
                let stats = ebridge_node::stats(t);
                if let Some(s) = &stats {
                    let totals: Vec<String> = ebridge_node::verdict_totals(s)
                        .iter()
                        .map(|(v, n)| format!("{v} {n}"))
                        .collect();
                    println!("ebridge datapath packets: {}", totals.join(", "));
                }
                obs.insert(t.setup.key().into(), json!({ "stats": stats }));
            }
            Setup::BareVeth | Setup::BridgeNfOff => {}
        }
    }
    Value::Object(obs)
}
