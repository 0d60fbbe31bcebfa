//! Links, addresses and routes over rtnetlink. Everything here acts in the
//! network namespace the socket was opened in; `in_netns` opens one in
//! another namespace on a thread of its own.
use std::{
    fs::File,
    future::Future,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd,
    path::Path,
};

use anyhow::{anyhow, Context as _, Result};
use futures::TryStreamExt as _;
use ipnet::{Ipv4Net, Ipv6Net};
use netlink_packet_route::{
    address::{AddressAttribute, AddressFlags},
    link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage},
    route::{RouteAddress, RouteAttribute, RouteMessage, RouteType},
    AddressFamily,
};
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};

/// What ebridge needs to know about a link.
#[derive(Clone, Debug)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<[u8; 6]>,
    pub kind: Option<InfoKind>,
    pub controller: Option<u32>,
    pub alias: Option<String>,
    pub mtu: Option<u32>,
    pub tx_packets: u64,
    pub rx_packets: u64,
}

/// The `ifalias` `up` gives the bridges it makes: what tells ebridge's own
/// bridge from someone else's when its pins are gone (e.g. they lived on a
/// bpffs that was unmounted with a private mount namespace).
pub const BRIDGE_ALIAS: &str = "ebridge datapath bridge";

impl Link {
    fn from_message(msg: &LinkMessage) -> Self {
        let mut link = Link {
            index: msg.header.index,
            name: String::new(),
            mac: None,
            kind: None,
            controller: None,
            alias: None,
            mtu: None,
            tx_packets: 0,
            rx_packets: 0,
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(name) => link.name = name.clone(),
                LinkAttribute::Address(addr) if addr.len() == 6 => {
                    let mut mac = [0; 6];
                    mac.copy_from_slice(addr);
                    link.mac = Some(mac);
                }
                LinkAttribute::Controller(index) => link.controller = Some(*index),
                LinkAttribute::IfAlias(alias) => link.alias = Some(alias.clone()),
                LinkAttribute::Mtu(mtu) => link.mtu = Some(*mtu),
                LinkAttribute::Stats64(stats) => {
                    link.tx_packets = stats.tx_packets;
                    link.rx_packets = stats.rx_packets;
                }
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let LinkInfo::Kind(kind) = info {
                            link.kind = Some(kind.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }
}

/// An IPv4 address configured on some link.
#[derive(Clone, Debug)]
pub struct LinkAddress {
    pub link_index: u32,
    pub net: Ipv4Net,
}

/// An IPv4 route of the main table.
#[derive(Clone, Debug)]
pub struct Route {
    pub destination: Ipv4Net,
    pub oif: Option<u32>,
    pub gateway: Option<Ipv4Addr>,
    /// Unreachable, blackhole and prohibit routes lead nowhere: they
    /// catch what no real route takes.
    pub leads_somewhere: bool,
}

pub struct Netlink {
    handle: Handle,
}

/// The kernel's errno inside a netlink error, if it is one.
pub fn errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| -c.get()),
        _ => None,
    }
}

impl Netlink {
    /// A connection in the caller's current network namespace. Must be
    /// called inside a tokio runtime.
    pub fn connect() -> Result<Self> {
        let (conn, handle, _) =
            rtnetlink::new_connection().context("cannot open a netlink socket")?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    pub async fn link_by_name(&self, name: &str) -> Result<Option<Link>> {
        let mut req = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match req.try_next().await {
            Ok(Some(msg)) => Ok(Some(Link::from_message(&msg))),
            Ok(None) => Ok(None),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(anyhow!(e).context(format!("cannot look up link {name}"))),
        }
    }

    pub async fn link_by_index(&self, index: u32) -> Result<Option<Link>> {
        let mut req = self.handle.link().get().match_index(index).execute();
        match req.try_next().await {
            Ok(Some(msg)) => Ok(Some(Link::from_message(&msg))),
            Ok(None) => Ok(None),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(anyhow!(e).context(format!("cannot look up link #{index}"))),
        }
    }

    pub async fn links(&self) -> Result<Vec<Link>> {
        let msgs: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .context("cannot list links")?;
        Ok(msgs.iter().map(Link::from_message).collect())
    }

    /// An explicit MAC keeps the bridge's address (and so its local FDB
    /// entry) from following the lowest port MAC as ports come and go.
    pub async fn create_bridge(&self, name: &str, mac: [u8; 6], mtu: u32) -> Result<Link> {
        let msg = LinkBridge::new(name)
            .address(mac.to_vec())
            .mtu(mtu)
            .up()
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .with_context(|| format!("cannot create bridge {name}"))?;
        let link = self
            .link_by_name(name)
            .await?
            .ok_or_else(|| anyhow!("bridge {name} vanished right after creation"))?;
        // The kernel ignores IFLA_IFALIAS when a link is created; only a
        // change sets it.
        let msg = LinkUnspec::new_with_index(link.index)
            .alias(BRIDGE_ALIAS)
            .build();
        if let Err(e) = self.handle.link().set(msg).execute().await {
            let _ = self.delete_link(link.index).await;
            return Err(anyhow!(e).context(format!("cannot name bridge {name} as ebridge's")));
        }
        Ok(link)
    }

    pub async fn add_address(&self, index: u32, net: Ipv4Net) -> Result<()> {
        self.handle
            .address()
            .add(index, IpAddr::V4(net.addr()), net.prefix_len())
            .execute()
            .await
            .with_context(|| format!("cannot add address {net} to link #{index}"))
    }

    /// An IPv6 address usable at once: no duplicate address detection
    /// (ebridge assigns the subnet's addresses, so none can clash).
    pub async fn add_address6(&self, index: u32, net: Ipv6Net) -> Result<()> {
        let mut req = self
            .handle
            .address()
            .add(index, IpAddr::V6(net.addr()), net.prefix_len());
        req.message_mut()
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
        req.execute()
            .await
            .with_context(|| format!("cannot add address {net} to link #{index}"))
    }

    /// Global IPv6 addresses (not link-local) by link.
    pub async fn ipv6_addresses(&self) -> Result<Vec<(u32, Ipv6Net)>> {
        let msgs: Vec<_> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .context("cannot list addresses")?;
        let mut out = Vec::new();
        for msg in msgs {
            if msg.header.family != AddressFamily::Inet6 {
                continue;
            }
            for attr in &msg.attributes {
                if let AddressAttribute::Address(IpAddr::V6(addr)) = attr {
                    let link_local = addr.segments()[0] & 0xffc0 == 0xfe80;
                    if link_local || addr.is_loopback() {
                        continue;
                    }
                    if let Ok(net) = Ipv6Net::new(*addr, msg.header.prefix_len) {
                        out.push((msg.header.index, net));
                    }
                }
            }
        }
        Ok(out)
    }

    pub async fn add_default_route6(&self, gateway: Ipv6Addr, oif: u32) -> Result<()> {
        let msg = RouteMessageBuilder::<Ipv6Addr>::new()
            .gateway(gateway)
            .output_interface(oif)
            .build();
        self.handle
            .route()
            .add(msg)
            .execute()
            .await
            .with_context(|| format!("cannot add IPv6 default route via {gateway}"))
    }

    pub async fn set_up(&self, index: u32) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .with_context(|| format!("cannot set link #{index} up"))
    }

    /// Creates a veth pair whose peer is born inside the namespace at
    /// `peer_netns` already named `peer_name` with `peer_mac`, so it never
    /// exists under a clashing name here.
    pub async fn create_veth_into(
        &self,
        host_name: &str,
        peer_name: &str,
        peer_mac: [u8; 6],
        mtu: u32,
        peer_netns: &File,
    ) -> Result<Link> {
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer_name.to_string())
            .address(peer_mac.to_vec())
            .mtu(mtu)
            .setns_by_fd(peer_netns.as_raw_fd())
            .build();
        let msg = LinkVeth::new(host_name, peer_name)
            .mtu(mtu)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .with_context(|| format!("cannot create veth pair {host_name}/{peer_name}"))?;
        self.link_by_name(host_name)
            .await?
            .ok_or_else(|| anyhow!("veth {host_name} vanished right after creation"))
    }

    /// Enslaves `index` to the bridge and sets it up.
    pub async fn attach_to_bridge(&self, index: u32, bridge_index: u32) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index)
            .controller(bridge_index)
            .up()
            .build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .with_context(|| format!("cannot attach link #{index} to bridge #{bridge_index}"))
    }

    pub async fn delete_link(&self, index: u32) -> Result<()> {
        match self.handle.link().del(index).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
            Err(e) => Err(anyhow!(e).context(format!("cannot delete link #{index}"))),
        }
    }

    pub async fn ipv4_addresses(&self) -> Result<Vec<LinkAddress>> {
        let msgs: Vec<_> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .context("cannot list addresses")?;
        let mut out = Vec::new();
        for msg in msgs {
            if msg.header.family != AddressFamily::Inet {
                continue;
            }
            for attr in &msg.attributes {
                if let AddressAttribute::Address(IpAddr::V4(addr)) = attr {
                    if let Ok(net) = Ipv4Net::new(*addr, msg.header.prefix_len) {
                        out.push(LinkAddress {
                            link_index: msg.header.index,
                            net,
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// IPv4 routes of the main table.
    pub async fn ipv4_routes(&self) -> Result<Vec<Route>> {
        let filter = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let msgs: Vec<RouteMessage> = self
            .handle
            .route()
            .get(filter)
            .execute()
            .try_collect()
            .await
            .context("cannot list routes")?;
        let mut out = Vec::new();
        for msg in msgs {
            if msg.header.table != libc::RT_TABLE_MAIN {
                continue;
            }
            let mut dst = Ipv4Addr::UNSPECIFIED;
            let mut oif = None;
            let mut gateway = None;
            for attr in &msg.attributes {
                match attr {
                    RouteAttribute::Destination(RouteAddress::Inet(a)) => dst = *a,
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    RouteAttribute::Gateway(RouteAddress::Inet(g)) => gateway = Some(*g),
                    _ => {}
                }
            }
            if let Ok(destination) = Ipv4Net::new(dst, msg.header.destination_prefix_length) {
                out.push(Route {
                    destination,
                    oif,
                    gateway,
                    leads_somewhere: !matches!(
                        msg.header.kind,
                        RouteType::Unreachable | RouteType::BlackHole | RouteType::Prohibit
                    ),
                });
            }
        }
        Ok(out)
    }

    /// `ip route add unreachable NET` (main table): what falls into it gets
    /// ICMP unreachable instead of the default route.
    pub async fn add_unreachable_route(&self, net: Ipv4Net) -> Result<()> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(net.network(), net.prefix_len())
            .kind(RouteType::Unreachable)
            .build();
        match self.handle.route().add(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(anyhow!(e).context(format!("cannot add unreachable route {net}"))),
        }
    }

    /// Removes the unreachable route for `net`, if there is one.
    pub async fn del_unreachable_route(&self, net: Ipv4Net) -> Result<()> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(net.network(), net.prefix_len())
            .kind(RouteType::Unreachable)
            .build();
        match self.handle.route().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if matches!(errno(&e), Some(libc::ESRCH) | Some(libc::ENOENT)) => Ok(()),
            Err(e) => Err(anyhow!(e).context(format!("cannot remove unreachable route {net}"))),
        }
    }

    pub async fn add_default_route(&self, gateway: Ipv4Addr, oif: u32) -> Result<()> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gateway)
            .output_interface(oif)
            .build();
        self.handle
            .route()
            .add(msg)
            .execute()
            .await
            .with_context(|| format!("cannot add default route via {gateway}"))
    }
}

/// Runs `f` with a netlink connection inside the network namespace at
/// `netns`. Namespaces are per thread, so this uses a thread of its own and
/// leaves the caller's namespace alone.
pub fn in_netns<F, Fut, T>(netns: &Path, f: F) -> Result<T>
where
    F: FnOnce(Netlink) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T>>,
    T: Send + 'static,
{
    let ns = File::open(netns).with_context(|| format!("cannot open netns {}", netns.display()))?;
    std::thread::spawn(move || -> Result<T> {
        // SAFETY: plain syscall on a valid fd; affects this thread only.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error()).context("setns failed");
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move { f(Netlink::connect()?).await })
    })
    .join()
    .map_err(|_| anyhow!("netns worker thread panicked"))?
}
