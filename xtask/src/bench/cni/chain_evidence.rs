//! Proof that the reference chain's traffic took the chain's path. Its
//! Linux bridge has no per-packet rule to count (the bridge plugin writes
//! none in filter, and the nat table only sees a flow's first packet), so:
//!
//! - per packet: the server container's host-side veth transmitted at
//!   least what the tools counted, i.e. the Linux bridge forwarded it
//!   (ebridge's fast path redirects into the container and skips that
//!   veth, so a chain node that somehow ran ebridge would fail this);
//! - per new flow (the connection test): the chain's rule that takes the
//!   NAT decision for each new connection — portmap's DNAT rule for the
//!   measured port, or, container to container, the bridge plugin's
//!   `-s <client>/32 -j CNI-…` in nat POSTROUTING, which bridged traffic
//!   reaches only through br_netfilter (when the node's
//!   bridge-nf-call-iptables is 1; otherwise there is no such rule to
//!   read and only the veth is checked).
use std::{collections::BTreeMap, net::Ipv4Addr};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use crate::{
    bench::{
        aim::{PORT_TCP_CRR, PUBLISH_OFFSET},
        evidence::parse_save,
        scenario::Scenario,
    },
    util::sh,
};

pub struct ChainEvidence {
    node: String,
    server_veth: String,
    per_packet: String,
    new_flow: Option<String>,
}

impl ChainEvidence {
    /// Finds the server's host veth and the rule for the path in the node
    /// as podman left it.
    pub fn find(
        node: &str,
        server_ns: &str,
        path: Scenario,
        client: Ipv4Addr,
        server: Ipv4Addr,
    ) -> Result<Self> {
        let server_veth = host_veth(node, server_ns)?;
        let rules = parse_save(&iptables_save(node)?);
        let new_flow = match path {
            Scenario::Publish => {
                let dnat = format!(
                    "-p tcp -m tcp --dport {} -j DNAT --to-destination {server}:{PORT_TCP_CRR}",
                    PORT_TCP_CRR - PUBLISH_OFFSET
                );
                let rule = rules.keys().find(|k| k.ends_with(&dnat)).with_context(|| {
                    format!("portmap wrote no rule ending in {dnat:?} in {node}")
                })?;
                Some(rule.clone())
            }
            _ if nf_call_iptables(node) => {
                let jump = format!("nat -A POSTROUTING -s {client}/32 ");
                rules
                    .keys()
                    .find(|k| k.starts_with(&jump) && k.contains(" -j CNI-"))
                    .cloned()
            }
            _ => None,
        };
        Ok(Self {
            node: node.to_string(),
            per_packet: format!("server host veth {server_veth} tx"),
            server_veth,
            new_flow,
        })
    }

    pub fn per_packet(&self) -> &str {
        &self.per_packet
    }

    pub fn new_flow_rule(&self) -> Option<&str> {
        self.new_flow.as_deref()
    }

    /// Every rule counter of the node and the veth's transmit counter.
    pub fn snapshot(&self) -> Result<BTreeMap<String, (u64, u64)>> {
        let mut c = parse_save(&iptables_save(&self.node)?);
        let text = sh(
            "ip",
            &[
                "-n",
                &self.node,
                "-s",
                "-j",
                "link",
                "show",
                "dev",
                &self.server_veth,
            ],
        )?;
        let v: Value = serde_json::from_str(&text).context("ip -j link: not JSON")?;
        let tx = &v[0]["stats64"]["tx"];
        let (Some(p), Some(b)) = (tx["packets"].as_u64(), tx["bytes"].as_u64()) else {
            bail!("no tx counters for {} in {text}", self.server_veth);
        };
        c.insert(self.per_packet.clone(), (p, b));
        Ok(c)
    }
}

fn iptables_save(node: &str) -> Result<String> {
    let net = format!("--net=/run/netns/{node}");
    sh("nsenter", &[&net, "--", "iptables-save", "-c"])
}

/// Whether bridged IPv4 passes iptables in `node` (br_netfilter loaded
/// and the namespace's sysctl on, as a fresh namespace has it then).
pub fn nf_call_iptables(node: &str) -> bool {
    let net = format!("--net=/run/netns/{node}");
    sh(
        "nsenter",
        &[
            &net,
            "--",
            "sysctl",
            "-n",
            "net.bridge.bridge-nf-call-iptables",
        ],
    )
    .is_ok_and(|v| v.trim() == "1")
}

/// The node-side end of the container's `eth0`.
fn host_veth(node: &str, container_ns: &str) -> Result<String> {
    let text = sh("ip", &["-n", container_ns, "-j", "link", "show", "eth0"])?;
    let v: Value = serde_json::from_str(&text).context("ip -j link: not JSON")?;
    let peer = v[0]["link_index"]
        .as_u64()
        .with_context(|| format!("eth0 in {container_ns} has no peer: {text}"))?;
    let text = sh("ip", &["-n", node, "-j", "link", "show"])?;
    let links: Value = serde_json::from_str(&text).context("ip -j link: not JSON")?;
    links
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["ifindex"].as_u64() == Some(peer))
        .and_then(|l| l["ifname"].as_str())
        .map(str::to_string)
        .with_context(|| format!("no link {peer} in {node}"))
}
