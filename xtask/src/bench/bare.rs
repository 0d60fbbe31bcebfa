//! The limit: one veth pair, no node in between.
use std::net::Ipv4Addr;

use anyhow::Result;

use super::{
    aim::{CLIENT_IP, CONTAINER_IP, OUTSIDE_NET, SERVER_IP, SUBNET},
    topology::{configure_container, Topology},
    uplink,
};
use crate::util::sh;

/// c2c: the two containers' `eth0`s are the two ends of one veth.
pub fn pair(t: &mut Topology) -> Result<()> {
    pair_of(t, CLIENT_IP, SERVER_IP)
}

/// The client's and the server's `eth0`s as the two ends of one veth,
/// addressed `client` and `server` (on-link to each other: one /16).
pub fn pair_of(t: &mut Topology, client: Ipv4Addr, server: Ipv4Addr) -> Result<()> {
    let (c1, c2) = (t.client_ns.clone(), t.server_ns.clone());
    t.add_netns(&c1)?;
    t.add_netns(&c2)?;
    sh(
        "ip",
        &[
            "-n", &c1, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &c2,
        ],
    )?;
    configure_container(&c1, client, None)?;
    configure_container(&c2, server, None)?;
    Ok(())
}

/// nat and publish: the container's `eth0` and the outside's `eth0` are
/// the two ends of one veth; each routes the other's subnet on-link.
pub fn to_outside(t: &mut Topology) -> Result<()> {
    let (container, outside) = (t.container_ns.clone(), t.outside_ns());
    t.add_netns(&container)?;
    t.add_netns(&outside)?;
    sh(
        "ip",
        &[
            "-n", &container, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
            "netns", &outside,
        ],
    )?;
    configure_container(&container, CONTAINER_IP, None)?;
    sh(
        "ip",
        &["-n", &container, "route", "add", OUTSIDE_NET, "dev", "eth0"],
    )?;
    uplink::address_outside(&outside)?;
    sh(
        "ip",
        &["-n", &outside, "route", "add", SUBNET, "dev", "eth0"],
    )?;
    Ok(())
}
