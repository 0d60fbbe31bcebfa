//! The rules dockerd (iptables backend) writes, installed inside a node
//! namespace only (`nsenter --net=`), never in the root namespace; the
//! same for ip6tables (`Family::V6`, the IPv6 scenarios).
use std::net::IpAddr;

use anyhow::{Context as _, Result};

use super::scratch::ScratchFile;
use crate::util::sh;

/// What dockerd writes for the default bridge with no published ports, in
/// its order. FORWARD policy DROP is set because dockerd does when it
/// turns on ip_forward. The nat rules matter too: with br_netfilter the
/// first packet of every bridged flow walks nat PREROUTING and POSTROUTING.
pub const BASE_RULES: &[&str] = &[
    "-t filter -P FORWARD DROP",
    "-t filter -N DOCKER",
    "-t filter -N DOCKER-ISOLATION-STAGE-1",
    "-t filter -N DOCKER-ISOLATION-STAGE-2",
    "-t filter -N DOCKER-USER",
    "-t filter -A FORWARD -j DOCKER-USER",
    "-t filter -A FORWARD -j DOCKER-ISOLATION-STAGE-1",
    "-t filter -A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    "-t filter -A FORWARD -o docker0 -j DOCKER",
    "-t filter -A FORWARD -i docker0 ! -o docker0 -j ACCEPT",
    "-t filter -A FORWARD -i docker0 -o docker0 -j ACCEPT",
    "-t filter -A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2",
    "-t filter -A DOCKER-ISOLATION-STAGE-1 -j RETURN",
    "-t filter -A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP",
    "-t filter -A DOCKER-ISOLATION-STAGE-2 -j RETURN",
    "-t filter -A DOCKER-USER -j RETURN",
    "-t nat -N DOCKER",
    "-t nat -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
    "-t nat -A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER",
    "-t nat -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
    "-t nat -A DOCKER -i docker0 -j RETURN",
];

/// Which of iptables and ip6tables a rule set goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// `iptables` / `ip6tables`; `-save`, `-restore` appended by callers.
    pub fn tool(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }
}

/// One published port (`docker run -p HOST:CTR/proto` on container `ip`;
/// an IPv6 `ip` gives dockerd's ip6tables rules).
#[derive(Clone, Copy)]
pub struct Published {
    pub host_port: u16,
    pub ip: IpAddr,
    pub ctr_port: u16,
    pub proto: &'static str,
}

impl Published {
    /// The three rules dockerd appends per published port: (table, rule),
    /// as iptables-save / ip6tables-save print them.
    pub fn rules(&self) -> [(&'static str, String); 3] {
        let Published {
            host_port,
            ip,
            ctr_port,
            proto,
        } = *self;
        let (host, to) = match ip {
            IpAddr::V4(_) => (format!("{ip}/32"), format!("{ip}:{ctr_port}")),
            IpAddr::V6(_) => (format!("{ip}/128"), format!("[{ip}]:{ctr_port}")),
        };
        [
            (
                "nat",
                format!("-A POSTROUTING -s {host} -d {host} -p {proto} -m {proto} --dport {ctr_port} -j MASQUERADE"),
            ),
            (
                "nat",
                format!("-A DOCKER ! -i docker0 -p {proto} -m {proto} --dport {host_port} -j DNAT --to-destination {to}"),
            ),
            (
                "filter",
                format!("-A DOCKER -d {host} ! -i docker0 -o docker0 -p {proto} -m {proto} --dport {ctr_port} -j ACCEPT"),
            ),
        ]
    }
}

/// `nsenter` arguments that run `rest` in the network namespace `net`
/// (`--net=/run/netns/NODE`).
fn nsenter_args<'a>(net: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![net, "--"];
    v.extend_from_slice(rest);
    v
}

/// `iptables -w 5 ARGS` in the node namespace, one call per rule.
pub fn apply_each(node: &str, rules: &[&str]) -> Result<()> {
    apply_each_of(Family::V4, node, rules)
}

/// The same with iptables or ip6tables.
pub fn apply_each_of<S: AsRef<str>>(family: Family, node: &str, rules: &[S]) -> Result<()> {
    let net = format!("--net=/run/netns/{node}");
    let tool = family.tool();
    for rule in rules {
        let rule = rule.as_ref();
        let mut args = nsenter_args(&net, &[tool, "-w", "5"]);
        args.extend(rule.split_whitespace());
        sh("nsenter", &args).with_context(|| format!("{tool} {rule} in {node}"))?;
    }
    Ok(())
}

/// `iptables-restore` input appending `rules` to existing chains.
pub fn restore_input(rules: &[(&str, String)]) -> String {
    let mut out = String::new();
    for table in ["nat", "filter"] {
        out.push_str(&format!("*{table}\n"));
        for (_, rule) in rules.iter().filter(|(t, _)| *t == table) {
            out.push_str(rule);
            out.push('\n');
        }
        out.push_str("COMMIT\n");
    }
    out
}

/// `iptables-restore [--noflush] FILE` in the node namespace.
pub fn restore(node: &str, input: &str, noflush: bool) -> Result<()> {
    restore_of(Family::V4, node, input, noflush)
}

/// The same with iptables-restore or ip6tables-restore.
pub fn restore_of(family: Family, node: &str, input: &str, noflush: bool) -> Result<()> {
    let tool = format!("{}-restore", family.tool());
    let file = ScratchFile::new(family.tool(), input)?;
    let net = format!("--net=/run/netns/{node}");
    let path = file.path_str()?;
    let mut args = nsenter_args(&net, &[&tool, "-w", "5"]);
    if noflush {
        args.push("--noflush");
    }
    args.push(&path);
    sh("nsenter", &args).with_context(|| format!("{tool} in {node}"))?;
    Ok(())
}

/// `iptables-save` of the node namespace (to put its rules back later).
pub fn save(node: &str) -> Result<String> {
    let net = format!("--net=/run/netns/{node}");
    sh("nsenter", &[&net, "--", "iptables-save"])
        .with_context(|| format!("iptables-save in {node}"))
}
