//! The node changes the agent follows, from rtnetlink's multicast groups
//! rather than by polling: IPv4 addresses added or removed anywhere (the
//! uplink's masquerade address, "every node address" publishes, the
//! networks native routing trusts) and links deleted (a container's host
//! veth removed behind ebridge's back).
use anyhow::{Context as _, Result};
use futures::StreamExt as _;
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::{
    constants::{RTMGRP_IPV4_IFADDR, RTMGRP_LINK},
    packet_core::NetlinkPayload,
    sys::{AsyncSocket as _, SocketAddr},
};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Some IPv4 address came or went.
    Addresses,
    /// The link with this index is gone.
    LinkGone(u32),
}

/// Changes in the calling thread's network namespace, as they happen.
pub fn subscribe() -> Result<UnboundedReceiver<Change>> {
    let (mut conn, _handle, mut messages) =
        rtnetlink::new_connection().context("cannot open a netlink socket for events")?;
    conn.socket_mut()
        .socket_mut()
        .bind(&SocketAddr::new(0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR))
        .context("cannot join the link and address netlink groups")?;
    tokio::spawn(conn);
    let (tx, rx) = unbounded_channel();
    tokio::spawn(async move {
        while let Some((msg, _)) = messages.next().await {
            let change = match msg.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(_))
                | NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelAddress(_)) => {
                    Change::Addresses
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) => {
                    Change::LinkGone(link.header.index)
                }
                _ => continue,
            };
            if tx.send(change).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}
