use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{Context as _, Result};
use ebridge_common::{
    config::{
        BridgeConfig, CONFIG_F_ICC, CONFIG_F_IPV6, CONFIG_F_IPV6_MASQUERADE, CONFIG_F_MASQUERADE,
        CONFIG_F_NATIVE_ROUTING, CONFIG_F_NAT_PORTS_GIVEN,
    },
    fdb::{FdbEntry, MacAddr, FDB_F_LOCAL},
};
use ipnet::{Ipv4Net, Ipv6Net};

use crate::{
    cli::{OnOff, UpArgs, XdpMode},
    datapath,
    error::usage,
    ipam,
    maps::{self, DatapathMaps},
    netlink::{Link, Netlink},
    netns, pins, settings, state, xdp,
};

/// The datapath settings a caller asked for; `None` (or `false` for the
/// flags) where it said nothing. `ebridge up`'s flags and a CNI network
/// config both come down to this.
#[derive(Clone, Debug, Default)]
pub struct Requested {
    pub bridge: String,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub uplink: Option<String>,
    pub mtu: Option<u32>,
    pub fdb_ageing: Option<u64>,
    pub icc: Option<bool>,
    pub masquerade: Option<bool>,
    pub nat_ports: Option<String>,
    pub nat_entries: Option<u32>,
    pub xdp: Option<XdpMode>,
    pub native_routing_cidrs: Option<Vec<String>>,
    pub subnet_v6: Option<String>,
    pub gateway_v6: Option<String>,
    pub ipv6_masquerade: Option<bool>,
}

impl From<&UpArgs> for Requested {
    fn from(args: &UpArgs) -> Self {
        Self {
            bridge: args.bridge.bridge.clone(),
            subnet: args.subnet.clone(),
            gateway: args.gateway.clone(),
            uplink: args.uplink.clone(),
            mtu: args.mtu,
            fdb_ageing: args.fdb_ageing,
            icc: args.no_icc.then_some(false),
            masquerade: args.no_masquerade.then_some(false),
            nat_ports: args.nat_ports.clone(),
            nat_entries: args.nat_entries,
            xdp: args.xdp,
            native_routing_cidrs: (!args.native_routing_cidr.is_empty())
                .then(|| args.native_routing_cidr.clone()),
            subnet_v6: args.subnet_v6.clone(),
            gateway_v6: args.gateway_v6.clone(),
            ipv6_masquerade: args.ipv6_masquerade.map(|m| m == OnOff::On),
        }
    }
}

/// What `ensure` found or made, for the caller to report.
pub struct UpSummary {
    pub lines: Vec<String>,
}

/// The effective settings of one `up`.
struct Plan {
    bridge: String,
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    mtu: u32,
    fdb_ageing_secs: u64,
    icc: bool,
    masquerade: bool,
    nat_ports: (u16, u16),
    /// `--nat-ports` maps every port into its range, privileged ones too.
    nat_ports_given: bool,
    nat_entries: u32,
    xdp: XdpMode,
    native_cidrs: Vec<Ipv4Net>,
    /// The IPv6 subnet and gateway, when the bridge has IPv6.
    v6: Option<(Ipv6Net, Ipv6Addr)>,
    ipv6_masquerade: bool,
}

fn plan(args: &Requested) -> Result<Plan> {
    let bridge = args.bridge.clone();
    settings::interface_name("bridge", &bridge)?;
    let subnet = settings::subnet(args.subnet.as_deref().unwrap_or(settings::DEFAULT_SUBNET))?;
    let gateway = settings::gateway(args.gateway.as_deref(), subnet)?;
    let mtu = settings::mtu(args.mtu.unwrap_or(settings::DEFAULT_MTU))?;
    let fdb_ageing_secs =
        settings::fdb_ageing(args.fdb_ageing.unwrap_or(settings::DEFAULT_FDB_AGEING_SECS))?;
    if let Some(uplink) = &args.uplink {
        settings::interface_name("uplink", uplink)?;
    }
    let nat_ports = match &args.nat_ports {
        Some(text) => settings::nat_ports(text)?,
        None => settings::DEFAULT_NAT_PORTS,
    };
    let nat_entries = settings::nat_entries(
        args.nat_entries
            .unwrap_or(ebridge_common::maps::DEFAULT_NAT_ENTRIES as u32),
    )?;
    Ok(Plan {
        bridge,
        subnet,
        gateway,
        mtu,
        fdb_ageing_secs,
        icc: args.icc.unwrap_or(true),
        masquerade: args.masquerade.unwrap_or(true),
        nat_ports,
        nat_ports_given: args.nat_ports.is_some(),
        nat_entries,
        xdp: args.xdp.unwrap_or_default(),
        native_cidrs: native_cidrs(args.native_routing_cidrs.as_deref().unwrap_or_default())?,
        v6: plan_v6(args)?,
        ipv6_masquerade: args.ipv6_masquerade.unwrap_or(true),
    })
}

fn plan_v6(args: &Requested) -> Result<Option<(Ipv6Net, Ipv6Addr)>> {
    let Some(text) = &args.subnet_v6 else {
        if args.gateway_v6.is_some() {
            return Err(usage(
                "--gateway-v6 needs --subnet-v6 (the IPv6 subnet it is an address of)",
            ));
        }
        if args.ipv6_masquerade.is_some() {
            return Err(usage(
                "--ipv6-masquerade needs --subnet-v6 (without it containers have no IPv6)",
            ));
        }
        return Ok(None);
    };
    let subnet = settings::subnet6(text)?;
    let gateway = settings::gateway6(args.gateway_v6.as_deref(), subnet)?;
    Ok(Some((subnet, gateway)))
}

/// Parsed and sorted, duplicates refused.
fn native_cidrs(texts: &[String]) -> Result<Vec<Ipv4Net>> {
    let mut out = Vec::new();
    for text in texts {
        let net = settings::cidr("native-routing CIDR", text)?;
        if out.contains(&net) {
            return Err(usage(format!(
                "native-routing CIDR {net} is given twice; give each once"
            )));
        }
        out.push(net);
    }
    out.sort();
    Ok(out)
}

/// The networks the node is on (for native routing, their hosts may reach
/// containers directly), but the containers' own subnet and loopback.
pub(crate) fn node_networks(
    addrs: &[crate::netlink::LinkAddress],
    subnet: Ipv4Net,
) -> Vec<Ipv4Net> {
    let mut nets: Vec<Ipv4Net> = addrs
        .iter()
        .map(|a| a.net.trunc())
        .filter(|n| *n != subnet && !n.addr().is_loopback())
        .collect();
    nets.sort();
    nets.dedup();
    nets
}

pub async fn run(args: UpArgs) -> Result<()> {
    let req = Requested::from(&args);
    // Bad values are refused before the lock makes the state directory.
    plan(&req)?;
    let nl = Netlink::connect()?;
    let _lock = lock(&nl, &req.bridge).await?;
    let summary = ensure(&nl, &req).await?;
    for line in summary.lines {
        println!("{line}");
    }
    Ok(())
}

/// The bridge's lock, for a caller that will `ensure` it; refuses a bridge
/// whose pins are gone (its state stays as it is for `down`).
pub async fn lock(nl: &Netlink, bridge: &str) -> Result<state::StateLock> {
    settings::interface_name("bridge", bridge)?;
    pins::ensure_bpffs()?;
    // Under the lock: another `up` may be between making the bridge and
    // pinning its maps.
    let lock = state::lock(bridge)?;
    if !maps::is_pinned(bridge) && super::down::stale_bridge(nl, bridge).await?.is_some() {
        return Err(usage(format!(
            "bridge {bridge} was made by ebridge but its datapath pins under {} are gone (a bpffs that was unmounted, e.g. with a private mount namespace?); run 'ebridge down --bridge {bridge}' to remove what is left, then 'up' again",
            pins::bridge_dir(bridge).display()
        )));
    }
    Ok(lock)
}

/// Brings the datapath up as `req` says, or checks that the live one has
/// the settings `req` names (an error naming every difference if not).
/// The caller holds the bridge's lock (`lock`). Prints nothing: a CNI
/// plugin's stdout is its result.
pub async fn ensure(nl: &Netlink, req: &Requested) -> Result<UpSummary> {
    let plan = plan(req)?;
    let bridge = &plan.bridge;
    if maps::is_pinned(bridge) {
        let maps = DatapathMaps::open(bridge)?;
        let cfg = maps.read_config()?;
        if cfg.netns_inode != netns::current_inode()? {
            return Err(usage(format!(
                "bridge name {bridge} is already used by ebridge in another network namespace; pick another --bridge name"
            )));
        }
        match nl.link_by_index(cfg.bridge_ifindex).await? {
            Some(link) if link.name == *bridge => {
                return already_up(nl, req, &plan, &cfg).await;
            }
            // The pins outlived their bridge (e.g. it was deleted by hand):
            // start over.
            _ => {
                pins::remove_bridge_dir(bridge)?;
            }
        }
    }

    let made = create(nl, req, &plan).await;
    if made.is_err() {
        let _ = state::remove(bridge);
    }
    made
}

/// Refuses input that cannot be used, before anything is made.
async fn check_environment(
    nl: &Netlink,
    args: &Requested,
    plan: &Plan,
) -> Result<(Link, Ipv4Addr)> {
    let bridge = &plan.bridge;
    if nl.link_by_name(bridge).await?.is_some() {
        return Err(usage(format!(
            "a link named {bridge} already exists and was not made by ebridge; pick another --bridge name"
        )));
    }
    let uplink = match &args.uplink {
        Some(name) => nl.link_by_name(name).await?.ok_or_else(|| {
            usage(format!(
                "uplink {name} does not exist in this network namespace; pass an existing interface to --uplink"
            ))
        })?,
        None => {
            let routes = nl.ipv4_routes().await?;
            let oif = routes
                .iter()
                .find(|r| r.destination.prefix_len() == 0)
                .and_then(|r| r.oif)
                .ok_or_else(|| {
                    usage("no default route in this network namespace to pick an uplink from; pass --uplink IFACE")
                })?;
            nl.link_by_index(oif)
                .await?
                .context("the default route's interface vanished")?
        }
    };
    let addresses = nl.ipv4_addresses().await?;
    let uplink_ip = addresses
        .iter()
        .find(|a| a.link_index == uplink.index)
        .map(|a| a.net.addr());
    let uplink_ip = match (uplink_ip, plan.masquerade) {
        (Some(ip), _) => ip,
        (None, false) => Ipv4Addr::UNSPECIFIED,
        (None, true) => {
            return Err(usage(format!(
                "uplink {} has no IPv4 address to masquerade behind; give it one, pick another --uplink, or use --no-masquerade",
                uplink.name
            )))
        }
    };
    for addr in addresses {
        if overlaps(addr.net, plan.subnet) {
            let on = nl
                .link_by_index(addr.link_index)
                .await?
                .map(|l| l.name)
                .unwrap_or_default();
            return Err(usage(format!(
                "subnet {} overlaps address {} on {on}; choose a --subnet that does not",
                plan.subnet, addr.net
            )));
        }
    }
    for route in nl.ipv4_routes().await? {
        // Unreachable/blackhole catch-alls (ebridge's own for a native
        // CIDR, or an operator's for the cluster CIDR) hold no network.
        if route.leads_somewhere
            && route.destination.prefix_len() > 0
            && overlaps(route.destination, plan.subnet)
        {
            return Err(usage(format!(
                "subnet {} overlaps the route to {}; choose a --subnet that does not",
                plan.subnet, route.destination
            )));
        }
    }
    if let Some((subnet6, _)) = plan.v6 {
        for (index, net) in nl.ipv6_addresses().await? {
            if net.contains(&subnet6.network()) || subnet6.contains(&net.network()) {
                let on = nl
                    .link_by_index(index)
                    .await?
                    .map(|l| l.name)
                    .unwrap_or_default();
                return Err(usage(format!(
                    "IPv6 subnet {subnet6} overlaps address {net} on {on}; choose a --subnet-v6 that does not"
                )));
            }
        }
    }
    Ok((uplink, uplink_ip))
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

async fn create(nl: &Netlink, args: &Requested, plan: &Plan) -> Result<UpSummary> {
    let (uplink, uplink_ip) = check_environment(nl, args, plan).await?;
    let bridge = nl
        .create_bridge(&plan.bridge, ipam::mac_for_ip(plan.gateway), plan.mtu)
        .await?;
    if let Err(e) = bring_up_datapath(nl, plan, &bridge, &uplink, uplink_ip).await {
        let _ = pins::remove_bridge_dir(&plan.bridge);
        let _ = nl.delete_link(bridge.index).await;
        return Err(e);
    }
    state::save(&plan.bridge, &state::BridgeState::default())?;
    let mut lines = vec![format!(
        "bridge {} up: subnet {} gateway {} uplink {} mtu {} icc {}",
        plan.bridge,
        plan.subnet,
        plan.gateway,
        uplink.name,
        plan.mtu,
        if plan.icc { "on" } else { "off" }
    )];
    if plan.masquerade {
        lines.push(format!(
            "masquerade behind {uplink_ip} ports {}-{}, NAT table {} entries",
            plan.nat_ports.0, plan.nat_ports.1, plan.nat_entries
        ));
    }
    if let Some((subnet6, gateway6)) = plan.v6 {
        lines.push(format!(
            "IPv6 subnet {subnet6} gateway {gateway6}, {}",
            if plan.ipv6_masquerade {
                "masqueraded behind the uplink's global address"
            } else {
                "routed with the containers' own addresses"
            }
        ));
    }
    if !plan.native_cidrs.is_empty() {
        lines.push(format!(
            "native routing (no masquerade, direct delivery) for {}",
            plan.native_cidrs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if plan.xdp != XdpMode::Off {
        lines.push(format!(
            "reverse NAT in XDP on {} ({} mode)",
            uplink.name,
            xdp::label(plan.xdp)
        ));
    }
    Ok(UpSummary { lines })
}

async fn bring_up_datapath(
    nl: &Netlink,
    plan: &Plan,
    bridge: &Link,
    uplink: &Link,
    uplink_ip: Ipv4Addr,
) -> Result<()> {
    let gw_net = Ipv4Net::new(plan.gateway, plan.subnet.prefix_len())?;
    nl.add_address(bridge.index, gw_net).await?;
    enable_forwarding(&plan.bridge)?;
    let uplink_ip6 = match plan.v6 {
        Some((subnet6, gateway6)) => {
            enable_ipv6(&plan.bridge)?;
            nl.add_address6(bridge.index, Ipv6Net::new(gateway6, subnet6.prefix_len())?)
                .await?;
            uplink_global_ipv6(nl, uplink.index).await?
        }
        None => Ipv6Addr::UNSPECIFIED,
    };

    let mut flags = 0;
    if plan.nat_ports_given {
        flags |= CONFIG_F_NAT_PORTS_GIVEN;
    }
    if plan.masquerade {
        flags |= CONFIG_F_MASQUERADE;
    }
    if plan.icc {
        flags |= CONFIG_F_ICC;
    }
    flags |= xdp::config_flags(plan.xdp);
    if !plan.native_cidrs.is_empty() {
        flags |= CONFIG_F_NATIVE_ROUTING;
    }
    let (subnet6, prefix6, gateway6) = match plan.v6 {
        Some((net, gw)) => (net.network().octets(), net.prefix_len(), gw.octets()),
        None => ([0; 16], 0, [0; 16]),
    };
    if plan.v6.is_some() {
        flags |= CONFIG_F_IPV6;
        if plan.ipv6_masquerade {
            flags |= CONFIG_F_IPV6_MASQUERADE;
        }
    }
    let cfg = BridgeConfig {
        gateway_ipv4: plan.gateway.octets(),
        subnet_ipv4: plan.subnet.network().octets(),
        subnet_prefix_len: plan.subnet.prefix_len().into(),
        bridge_ifindex: bridge.index,
        uplink_ifindex: uplink.index,
        mtu: plan.mtu,
        flags,
        nat_entries: plan.nat_entries,
        fdb_ageing_ns: plan.fdb_ageing_secs * 1_000_000_000,
        netns_inode: netns::current_inode()?,
        uplink_ipv4: uplink_ip.octets(),
        nat_port_min: plan.nat_ports.0,
        nat_port_max: plan.nat_ports.1,
        bridge_mac: bridge.mac.unwrap_or_default(),
        _pad: [0; 2],
        netns_cookie: netns::current_cookie()?,
        gateway_ipv6: gateway6,
        subnet_ipv6: subnet6,
        subnet6_prefix_len: prefix6.into(),
        _pad6: 0,
        uplink_ipv6: uplink_ip6.octets(),
    };
    datapath::load_and_pin(&plan.bridge, &cfg, plan.nat_entries, &uplink.name)?;
    if let Some(mac) = bridge.mac {
        let mut maps = DatapathMaps::open(&plan.bridge)?;
        let local = FdbEntry {
            ifindex: bridge.index,
            flags: FDB_F_LOCAL,
            last_seen_ns: 0,
        };
        maps.fdb.insert(MacAddr { octets: mac }, local, 0)?;
    }
    let link_addrs = nl.ipv4_addresses().await?;
    let addrs: Vec<Ipv4Addr> = link_addrs.iter().map(|a| a.net.addr()).collect();
    let addrs6: Vec<Ipv6Addr> = nl
        .ipv6_addresses()
        .await?
        .iter()
        .map(|(_, net)| net.addr())
        .collect();
    let mut maps = DatapathMaps::open(&plan.bridge)?;
    maps.sync_node_addrs(&addrs, &addrs6)?;
    if !plan.native_cidrs.is_empty() {
        maps.sync_native_nets(&plan.native_cidrs, &node_networks(&link_addrs, plan.subnet))?;
        // As Calico's blackhole routes for its pools: a node subnet whose
        // route is withdrawn is unreachable (ICMP to the pod), instead of
        // the default route taking pod-sourced packets out.
        for net in &plan.native_cidrs {
            nl.add_unreachable_route(*net).await?;
        }
    }
    if plan.masquerade {
        let uplink_ip6 = (plan.v6.is_some()
            && !uplink_ip6.is_unspecified()
            && cfg.flags & CONFIG_F_IPV6_MASQUERADE != 0)
            .then_some(uplink_ip6);
        crate::node_flows::hold_existing(
            &mut maps,
            uplink_ip,
            uplink_ip6,
            super::show::monotonic_ns(),
        )?;
    }
    Ok(())
}

/// Routing for the containers' subnet, on the bridge only: the fast path's
/// FIB lookups and the kernel's slow path (TTL expiry, fragmentation
/// needed) treat the bridge as a router port. The namespace-wide
/// `ip_forward` and the uplink's own setting stay as they are.
fn enable_forwarding(bridge: &str) -> Result<()> {
    let path = format!("/proc/sys/net/ipv4/conf/{bridge}/forwarding");
    std::fs::write(&path, "1").with_context(|| format!("cannot write {path}"))
}

/// IPv6 on the bridge, which holds the gateway address: on (a node may
/// have it off by default), no DAD for the address ebridge assigns, no
/// router advertisements taken from containers, and forwarding on this
/// interface only (the fast path's FIB lookups need it on the interface
/// they look up from, as `enable_forwarding` does for IPv4).
fn enable_ipv6(bridge: &str) -> Result<()> {
    for (key, value) in [
        ("disable_ipv6", "0"),
        ("accept_dad", "0"),
        ("accept_ra", "0"),
        ("forwarding", "1"),
    ] {
        let path = format!("/proc/sys/net/ipv6/conf/{bridge}/{key}");
        std::fs::write(&path, value).with_context(|| format!("cannot write {path}"))?;
    }
    // IPv6 forwarding is namespace-wide but for this per-interface switch
    // (Linux 6.17+): with it the kernel forwards what the fast path hands
    // it from the bridge (hop limit expiring: time exceeded from the
    // gateway; an unroutable destination: unreachable) without turning
    // the whole node into a router. Older kernels have no such switch.
    let force = format!("/proc/sys/net/ipv6/conf/{bridge}/force_forwarding");
    if std::path::Path::new(&force).exists() {
        std::fs::write(&force, "1").with_context(|| format!("cannot write {force}"))?;
    }
    Ok(())
}

/// The uplink's global IPv6 address to masquerade behind (unspecified
/// when it has none: IPv6 masquerade then drops, as a missing address
/// leaves MASQUERADE nothing to use).
async fn uplink_global_ipv6(nl: &Netlink, uplink: u32) -> Result<Ipv6Addr> {
    Ok(nl
        .ipv6_addresses()
        .await?
        .into_iter()
        .find(|(index, _)| *index == uplink)
        .map_or(Ipv6Addr::UNSPECIFIED, |(_, net)| net.addr()))
}

/// `up` on a live bridge: nothing changes; settings the user gave that
/// differ from the live ones are reported as an error.
async fn already_up(
    nl: &Netlink,
    args: &Requested,
    plan: &Plan,
    cfg: &BridgeConfig,
) -> Result<UpSummary> {
    let live_subnet = Ipv4Net::new(cfg.subnet_ipv4.into(), cfg.subnet_prefix_len as u8)?;
    let live_gateway = Ipv4Addr::from(cfg.gateway_ipv4);
    let live_uplink = nl
        .link_by_index(cfg.uplink_ifindex)
        .await?
        .map(|l| l.name)
        .unwrap_or_else(|| format!("#{}", cfg.uplink_ifindex));
    let live_icc = cfg.flags & CONFIG_F_ICC != 0;
    let mut diffs = Vec::new();
    if args.subnet.is_some() && plan.subnet != live_subnet {
        diffs.push(format!("subnet {live_subnet} (asked {})", plan.subnet));
    }
    if args.gateway.is_some() && plan.gateway != live_gateway {
        diffs.push(format!("gateway {live_gateway} (asked {})", plan.gateway));
    }
    if let Some(uplink) = &args.uplink {
        if *uplink != live_uplink {
            diffs.push(format!("uplink {live_uplink} (asked {uplink})"));
        }
    }
    if args.mtu.is_some() && plan.mtu != cfg.mtu {
        diffs.push(format!("mtu {} (asked {})", cfg.mtu, plan.mtu));
    }
    let live_ageing = cfg.fdb_ageing_ns / 1_000_000_000;
    if args.fdb_ageing.is_some() && plan.fdb_ageing_secs != live_ageing {
        diffs.push(format!(
            "fdb-ageing {live_ageing} (asked {})",
            plan.fdb_ageing_secs
        ));
    }
    let on_off = |b: bool| if b { "on" } else { "off" };
    if args.icc.is_some_and(|icc| icc != live_icc) {
        diffs.push(format!(
            "icc {} (asked {})",
            on_off(live_icc),
            on_off(plan.icc)
        ));
    }
    let live_masquerade = cfg.flags & CONFIG_F_MASQUERADE != 0;
    if args.masquerade.is_some_and(|m| m != live_masquerade) {
        diffs.push(format!(
            "masquerade {} (asked {})",
            on_off(live_masquerade),
            on_off(plan.masquerade)
        ));
    }
    if args.nat_ports.is_some() && plan.nat_ports != (cfg.nat_port_min, cfg.nat_port_max) {
        diffs.push(format!(
            "nat-ports {}-{} (asked {}-{})",
            cfg.nat_port_min, cfg.nat_port_max, plan.nat_ports.0, plan.nat_ports.1
        ));
    }
    if args.nat_entries.is_some() && plan.nat_entries != cfg.nat_entries {
        diffs.push(format!(
            "nat-entries {} (asked {})",
            cfg.nat_entries, plan.nat_entries
        ));
    }
    if args.native_routing_cidrs.is_some() {
        let live = DatapathMaps::open(&plan.bridge)?.native_cidrs()?;
        if live != plan.native_cidrs {
            let show = |v: &[Ipv4Net]| {
                if v.is_empty() {
                    "none".to_string()
                } else {
                    v.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                }
            };
            diffs.push(format!(
                "native-routing CIDRs {} (asked {})",
                show(&live),
                show(&plan.native_cidrs)
            ));
        }
    }
    let live_v6 = (cfg.flags & CONFIG_F_IPV6 != 0)
        .then(|| {
            Ipv6Net::new(cfg.subnet_ipv6.into(), cfg.subnet6_prefix_len as u8)
                .ok()
                .map(|net| (net, Ipv6Addr::from(cfg.gateway_ipv6)))
        })
        .flatten();
    let show6 = |v: Option<(Ipv6Net, Ipv6Addr)>| {
        v.map_or("none".to_string(), |(net, gw)| {
            format!("{net} gateway {gw}")
        })
    };
    if (args.subnet_v6.is_some() || args.gateway_v6.is_some()) && plan.v6 != live_v6 {
        diffs.push(format!(
            "IPv6 subnet {} (asked {})",
            show6(live_v6),
            show6(plan.v6)
        ));
    }
    let live_masq6 = cfg.flags & CONFIG_F_IPV6_MASQUERADE != 0;
    if args.ipv6_masquerade.is_some_and(|m| m != live_masq6) {
        diffs.push(format!(
            "ipv6-masquerade {} (asked {})",
            on_off(live_masq6),
            on_off(plan.ipv6_masquerade)
        ));
    }
    let live_xdp = xdp::mode_of(cfg.flags);
    if args.xdp.is_some() && plan.xdp != live_xdp {
        diffs.push(format!(
            "xdp {} (asked {})",
            xdp::label(live_xdp),
            xdp::label(plan.xdp)
        ));
    }
    if !diffs.is_empty() {
        return Err(usage(format!(
            "bridge {} is already up with {}; run 'ebridge down --bridge {}' first to change them",
            plan.bridge,
            diffs.join(", "),
            plan.bridge
        )));
    }
    Ok(UpSummary {
        lines: vec![format!(
            "bridge {} is already up: subnet {live_subnet} gateway {live_gateway} uplink {live_uplink}; nothing changed",
            plan.bridge
        )],
    })
}
