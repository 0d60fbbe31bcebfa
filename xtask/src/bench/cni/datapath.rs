//! The cni scenario's datapath: on each node, two of the containers the
//! lifecycle part left running (the top level's middle ones: the server
//! publishes the measured ports, the client one port like the others),
//! measured like every other scenario's setups (rounds.rs) on two paths:
//! client container to server container, and the node's outside host to
//! the server's published ports on the node's uplink address. The load
//! tools enter the containers' network namespaces (podman bind-mounts
//! them under /run/netns) from the host; nothing runs inside the image.
use serde_json::json;

use anyhow::Result;

use super::{
    chain_evidence::{self, ChainEvidence},
    lifecycle::Plan,
    node::{Kind, Node},
};
use crate::bench::{
    aim::Aim,
    ebridge_node,
    scenario::Scenario,
    topology::{Adopted, Topology},
};

/// The scenario's four setups in its order (chain, ebridge; c2c, then
/// publish).
pub fn topologies(nodes: &[Node], plan: &Plan) -> Result<Vec<Topology>> {
    let (server, _) = plan.filler(plan.server_index());
    let (client, _) = plan.filler(plan.client_index());
    let mut out = Vec::new();
    for &setup in Scenario::Cni.setups() {
        let kind = if setup.is_ebridge_cni() {
            Kind::Ebridge
        } else {
            Kind::Chain
        };
        let Some(n) = nodes.iter().find(|n| n.engine.kind == kind) else {
            anyhow::bail!("no {} node", kind.key());
        };
        let e = &n.engine;
        let (server_ns, server_ip) = e.sandbox(&server)?;
        let (client_ns, client_ip) = e.sandbox(&client)?;
        let path = Scenario::Cni.path(setup);
        let (client_side, aim) = if path == Scenario::C2c {
            (client_ns.clone(), Aim::c2c(server_ip))
        } else {
            (e.lab.outside.clone(), Aim::published(server_ip))
        };
        let chain = match kind {
            Kind::Chain => Some(ChainEvidence::find(
                &e.lab.node,
                &server_ns,
                path,
                client_ip,
                server_ip,
            )?),
            Kind::Ebridge => None,
        };
        let new_flow_rule = chain
            .as_ref()
            .and_then(|c| c.new_flow_rule().map(str::to_string));
        let bridge = (kind == Kind::Ebridge).then(|| e.lab.bridge.clone());
        let mut t = Topology::adopt(
            Scenario::Cni,
            setup,
            Adopted {
                node: e.lab.node.clone(),
                client_ns: client_side,
                server_ns: server_ns.clone(),
                ebridge_bridge: bridge.clone(),
                aim,
                agent: n.agent.clone(),
                chain,
            },
        )?;
        t.notes.insert(
            "containers".into(),
            json!({
                "server": {"name": server, "ip": server_ip.to_string(), "netns": server_ns},
                "client": {"name": client, "ip": client_ip.to_string(), "netns": client_ns},
                "running_on_node": plan.levels.iter().max().map(|l| l - 1),
            }),
        );
        t.notes.insert("network".into(), e.conflist.clone());
        t.notes.insert(
            "bridge_nf_call_iptables".into(),
            json!(chain_evidence::nf_call_iptables(&e.lab.node)),
        );
        if let Some(rule) = new_flow_rule {
            t.notes.insert("new_flow_rule".into(), json!(rule));
        }
        if let Some(b) = &bridge {
            if let Ok(cfg) = ebridge_node::ebridge(&e.lab.node, b, &["show", "config", "--json"]) {
                if let Ok(cfg) = serde_json::from_str::<serde_json::Value>(&cfg) {
                    t.notes.insert("config".into(), cfg);
                }
            }
        }
        out.push(t);
    }
    Ok(out)
}
