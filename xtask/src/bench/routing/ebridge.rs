//! ebridge's nodes, as docs/cluster.md runs them: on each node `ebridge
//! up --subnet <its pod /24> --native-routing-cidr 10.244.0.0/16 --uplink
//! under0` (every other setting its default), its pod made by `ebridge
//! endpoint add`, and `ebridge agent` on both nodes from the end of the
//! build to the removal of the setup. Node sysctls stay at their defaults
//! (`ip_forward` 0): the pods' packets are routed by the endpoint program
//! (FIB lookup, redirect out of the underlay) and delivered by the uplink
//! program (`bpf_redirect_peer`), not by the node's IP forwarding.
use std::rc::Rc;

use anyhow::{bail, Result};
use serde_json::{Map, Value};

use super::{
    node_ns, pod_ip, pod_ns, pod_subnet, CLIENT_NODE, CLUSTER_CIDR, SERVER_NODE, UNDERLAY,
};
use crate::bench::{agent::Agent, ebridge_node::ebridge, mapmem, topology::Topology};

pub fn build(t: &mut Topology) -> Result<()> {
    let base2 = match &t.peer {
        Some(p) => p.base.clone(),
        None => bail!("a routing setup without its second node"),
    };
    let mut per_node = Map::new();
    let mut agents = Vec::new();
    for (base, n) in [(t.base.clone(), CLIENT_NODE), (base2, SERVER_NODE)] {
        let (node, pod, bridge) = (node_ns(&base), pod_ns(&base), base.clone());
        // Recorded before `up`, so the guard runs `ebridge down` even if
        // `up` fails half-way.
        if n == CLIENT_NODE {
            t.ebridge_bridge = Some(bridge.clone());
        } else if let Some(p) = t.peer.as_mut() {
            p.ebridge_bridge = Some(bridge.clone());
        }
        let subnet = pod_subnet(n);
        let up = [
            "up",
            "--subnet",
            &subnet,
            "--native-routing-cidr",
            CLUSTER_CIDR,
            "--uplink",
            UNDERLAY,
        ];
        ebridge(&node, &bridge, &up)?;
        t.adopt_netns(&pod);
        let ip = pod_ip(n).to_string();
        ebridge(&node, &bridge, &["endpoint", "add", &pod, "--ip", &ip])?;
        let mut notes = Map::new();
        notes.insert("up".into(), up.join(" ").into());
        if let Ok(cfg) = ebridge(&node, &bridge, &["show", "config", "--json"]) {
            if let Ok(cfg) = serde_json::from_str::<Value>(&cfg) {
                notes.insert("config".into(), cfg);
            }
        }
        notes.insert("map_memory".into(), mapmem::of_bridge(&bridge).into());
        per_node.insert(format!("node{n}"), Value::Object(notes));
        agents.push((node, bridge));
    }
    t.notes.insert("ebridge".into(), Value::Object(per_node));
    let agents: Vec<(&str, &str)> = agents
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_str()))
        .collect();
    t.agent = Some(Rc::new(Agent::start_on(&agents)?));
    Ok(())
}
