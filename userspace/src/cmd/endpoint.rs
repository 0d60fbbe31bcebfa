use std::{
    collections::HashSet,
    hash::{DefaultHasher, Hash, Hasher},
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use ebridge_common::{
    config::{BridgeConfig, CONFIG_F_IPV6},
    endpoint::Endpoint,
    fdb::{FdbEntry, MacAddr, FDB_F_LOCAL},
};
use ipnet::{Ipv4Net, Ipv6Net};

use super::open_live_bridge;
use crate::{
    cli::EndpointAddArgs,
    datapath,
    error::usage,
    ipam,
    maps::DatapathMaps,
    netlink::{Link, Netlink},
    netns,
    publish::PublishSpec,
    settings,
    state::{self, EndpointRecord},
};

/// An endpoint to attach, as `endpoint add` and a CNI ADD both ask for it.
pub struct Request {
    pub name: String,
    /// An existing network namespace; `None`: create `/run/netns/NAME`.
    pub netns: Option<PathBuf>,
    /// `None`: the next free address of the subnet.
    pub ip: Option<Ipv4Addr>,
    /// `None`: the next free address of the IPv6 subnet, if the bridge has
    /// one.
    pub ip6: Option<Ipv6Addr>,
    /// `None`: `02:42:` + the address, like Docker.
    pub mac: Option<[u8; 6]>,
    pub ifname: String,
    pub publish: Vec<PublishSpec>,
    /// Refuse host ports a node process listens on. A container runtime
    /// holds its containers' published ports open itself (podman's conmon),
    /// so its plugin must not.
    pub check_listeners: bool,
    /// The CNI container ID the endpoint belongs to.
    pub container_id: Option<String>,
    /// `None`: Docker-style `vethXXXXXXX` from bridge and name.
    pub host_veth: Option<String>,
}

impl Request {
    /// What `ebridge endpoint add` asks for; bad input is refused here.
    fn from_args(args: &EndpointAddArgs) -> Result<Self> {
        settings::endpoint_name(&args.name)?;
        settings::interface_name("interface", &args.ifname)?;
        Ok(Self {
            name: args.name.clone(),
            netns: args.netns.as_ref().map(PathBuf::from),
            ip: args
                .ip
                .as_deref()
                .map(|text| settings::ipv4("address", text))
                .transpose()?,
            ip6: args
                .ip6
                .as_deref()
                .map(|text| settings::ipv6("IPv6 address", text))
                .transpose()?,
            mac: args.mac.as_deref().map(ipam::parse_mac).transpose()?,
            ifname: args.ifname.clone(),
            publish: args
                .publish
                .iter()
                .map(|s| crate::publish::parse(s))
                .collect::<Result<_>>()?,
            check_listeners: true,
            container_id: None,
            host_veth: None,
        })
    }
}

/// An IPv6 subnet as a container sees it: prefix length and gateway.
pub type Subnet6 = (u8, Ipv6Addr);

/// What was made, for the caller to report.
pub struct Attached {
    pub record: EndpointRecord,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    /// The IPv6 subnet's prefix length and gateway, when it has IPv6.
    pub v6: Option<Subnet6>,
    pub mtu: u32,
}

/// Everything decided before anything is made.
struct Plan {
    record: EndpointRecord,
    publish: Vec<PublishSpec>,
    mac: [u8; 6],
    prefix_len: u8,
    gateway: Ipv4Addr,
    v6: Option<Subnet6>,
}

pub async fn add(bridge: &str, args: EndpointAddArgs) -> Result<()> {
    let req = Request::from_args(&args)?;
    let (mut maps, nl) = open_live_bridge(bridge).await?;
    let _lock = state::lock(bridge)?;
    let mut st = state::load(bridge)?;
    let made = attach(bridge, req, &mut st, &mut maps, &nl).await?;
    let r = &made.record;
    let ip6 = match (r.ipv6, made.v6) {
        (Some(addr), Some((len, _))) => format!(" ip6 {addr}/{len}"),
        _ => String::new(),
    };
    println!(
        "endpoint {} netns {} veth {} ip {}/{}{ip6} mac {}",
        r.name,
        r.netns.display(),
        r.host_veth,
        r.ipv4,
        made.prefix_len,
        r.mac
    );
    for spec in r
        .publish
        .iter()
        .filter_map(|p| crate::publish::parse(p).ok())
    {
        println!("  published {}", super::publish::shown(&spec, r));
    }
    state::save(bridge, &st)
}

/// Attaches an endpoint as `req` asks and records it in `st` (which the
/// caller saves). The caller holds the bridge's lock. On failure nothing
/// is left of it.
pub async fn attach(
    bridge: &str,
    req: Request,
    st: &mut state::BridgeState,
    maps: &mut DatapathMaps,
    nl: &Netlink,
) -> Result<Attached> {
    let cfg = maps.read_config()?;
    let plan = plan(bridge, &req, st, maps, &cfg, nl).await?;
    let created_netns = plan.record.created_netns;
    if created_netns {
        netns::create(&req.name).await?;
    }
    if let Err(e) = make(bridge, &plan, &cfg, maps, nl).await {
        if created_netns {
            let _ = netns::delete(&req.name).await;
        }
        return Err(e);
    }
    st.endpoints.push(plan.record.clone());
    Ok(Attached {
        record: plan.record,
        prefix_len: plan.prefix_len,
        gateway: plan.gateway,
        v6: plan.v6,
        mtu: cfg.mtu,
    })
}

async fn plan(
    bridge: &str,
    args: &Request,
    st: &state::BridgeState,
    maps: &DatapathMaps,
    cfg: &BridgeConfig,
    nl: &Netlink,
) -> Result<Plan> {
    if st.endpoints.iter().any(|e| e.name == args.name) {
        return Err(usage(format!(
            "endpoint {} already exists on bridge {bridge}; pick another name or remove it first",
            args.name
        )));
    }
    let (netns_path, created_netns) = match &args.netns {
        Some(path) => {
            netns::check_netns_arg(path)?;
            (path.clone(), false)
        }
        None => {
            let path = netns::named_path(&args.name);
            if path.exists() {
                return Err(usage(format!(
                    "netns {} already exists; pass --netns {} to use it",
                    path.display(),
                    path.display()
                )));
            }
            (path, true)
        }
    };
    // The container side is born inside the netns under this name, so a
    // name the netns already has ("lo" in every one) fails there, after the
    // host side exists.
    let ifname_taken = if created_netns {
        args.ifname == "lo"
    } else {
        let ifname = args.ifname.clone();
        crate::netlink::in_netns(&netns_path, move |nl| async move {
            Ok(nl.link_by_name(&ifname).await?.is_some())
        })?
    };
    if ifname_taken {
        return Err(usage(format!(
            "--ifname {}: netns {} already has an interface of that name; pick another --ifname",
            args.ifname,
            netns_path.display()
        )));
    }

    let subnet = Ipv4Net::new(cfg.subnet_ipv4.into(), cfg.subnet_prefix_len as u8)?;
    let gateway = Ipv4Addr::from(cfg.gateway_ipv4);
    let mut taken = HashSet::new();
    for key in maps.endpoint_by_ip.keys() {
        taken.insert(Ipv4Addr::from(key?));
    }
    let ipv4 = match args.ip {
        Some(addr) => {
            ipam::check_requested(addr, subnet, gateway, &taken)?;
            addr
        }
        None => ipam::next_free(subnet, gateway, &taken).ok_or_else(|| {
            usage(format!(
                "subnet {subnet} has no free address left for another endpoint"
            ))
        })?,
    };
    let (ipv6, v6) = plan_v6(args, maps, cfg, bridge)?;
    let mac = args.mac.unwrap_or_else(|| ipam::mac_for_ip(ipv4));
    // Endpoints' own MACs, plus whatever the FDB knows (bridge, host veths).
    let mut macs_in_use = HashSet::new();
    for entry in maps.endpoints.iter() {
        macs_in_use.insert(entry?.1.mac);
    }
    for entry in maps.fdb.iter() {
        macs_in_use.insert(entry?.0.octets);
    }
    if macs_in_use.contains(&mac) {
        return Err(usage(format!(
            "MAC {} is already in use on bridge {bridge}; pick another --mac",
            ipam::format_mac(&mac)
        )));
    }
    let publish =
        super::publish::validate(&args.publish, st, args.check_listeners, ipv6.is_some())?;
    let host_veth = match &args.host_veth {
        Some(name) => name.clone(),
        None => free_veth_name(bridge, &args.name, nl).await?,
    };
    Ok(Plan {
        record: EndpointRecord {
            name: args.name.clone(),
            netns: netns_path,
            created_netns,
            host_veth,
            ifname: args.ifname.clone(),
            ipv4,
            ipv6,
            mac: ipam::format_mac(&mac),
            publish: publish.iter().map(|p| p.canonical()).collect(),
            container_id: args.container_id.clone(),
        },
        publish,
        mac,
        prefix_len: subnet.prefix_len(),
        gateway,
        v6,
    })
}

/// The endpoint's IPv6 address (and the subnet's prefix length and
/// gateway), when the bridge has IPv6.
fn plan_v6(
    args: &Request,
    maps: &DatapathMaps,
    cfg: &BridgeConfig,
    bridge: &str,
) -> Result<(Option<Ipv6Addr>, Option<Subnet6>)> {
    if cfg.flags & CONFIG_F_IPV6 == 0 {
        if let Some(addr) = args.ip6 {
            return Err(usage(format!(
                "IPv6 address {addr} asked for, but bridge {bridge} has no IPv6 subnet; bring it up with --subnet-v6"
            )));
        }
        return Ok((None, None));
    }
    let subnet = Ipv6Net::new(cfg.subnet_ipv6.into(), cfg.subnet6_prefix_len as u8)?;
    let gateway = Ipv6Addr::from(cfg.gateway_ipv6);
    let mut taken = HashSet::new();
    for key in maps.endpoint_by_ip6.keys() {
        taken.insert(Ipv6Addr::from(key?));
    }
    let addr = match args.ip6 {
        Some(addr) => {
            ipam::check_requested6(addr, subnet, gateway, &taken)?;
            addr
        }
        None => ipam::next_free6(subnet, gateway, &taken).ok_or_else(|| {
            usage(format!(
                "IPv6 subnet {subnet} has no free address left for another endpoint"
            ))
        })?,
    };
    Ok((Some(addr), Some((subnet.prefix_len(), gateway))))
}

/// Docker-style `vethXXXXXXX`, derived from bridge and endpoint name so the
/// same endpoint gets the same name; rehashed on the rare clash.
async fn free_veth_name(bridge: &str, name: &str, nl: &Netlink) -> Result<String> {
    for salt in 0u32..16 {
        let mut h = DefaultHasher::new();
        (bridge, name, salt).hash(&mut h);
        let candidate = format!("veth{:07x}", h.finish() & 0x0fff_ffff);
        if nl.link_by_name(&candidate).await?.is_none() {
            return Ok(candidate);
        }
    }
    anyhow::bail!("no free host veth name for endpoint {name}")
}

/// Creates the veth pair, configures both ends, records the endpoint in the
/// maps and attaches the program. On failure everything made is undone.
async fn make(
    bridge: &str,
    plan: &Plan,
    cfg: &BridgeConfig,
    maps: &mut DatapathMaps,
    nl: &Netlink,
) -> Result<()> {
    let r = &plan.record;
    let ns_file = std::fs::File::open(&r.netns)
        .with_context(|| format!("cannot open netns {}", r.netns.display()))?;
    let veth = nl
        .create_veth_into(&r.host_veth, &r.ifname, plan.mac, cfg.mtu, &ns_file)
        .await?;
    let result = wire(bridge, plan, cfg, maps, nl, &veth).await;
    if result.is_err() {
        for spec in &plan.publish {
            let _ = super::publish::uninstall(maps, r, spec);
        }
        let _ = datapath::detach_endpoint(bridge, &r.host_veth);
        let _ = forget(maps, veth.index, r.ipv4, r.ipv6, plan.mac);
        // Deleting one end removes the peer inside the netns too.
        let _ = nl.delete_link(veth.index).await;
    }
    result
}

async fn wire(
    bridge: &str,
    plan: &Plan,
    cfg: &BridgeConfig,
    maps: &mut DatapathMaps,
    nl: &Netlink,
    veth: &Link,
) -> Result<()> {
    let r = &plan.record;
    let v6 = r.ipv6.zip(plan.v6).map(|(addr, (len, gw))| (addr, len, gw));
    configure_container_side(
        &r.netns,
        &r.ifname,
        r.ipv4,
        plan.prefix_len,
        plan.gateway,
        v6,
    )?;
    if crate::xdp::needs_container_gro(cfg.flags) {
        crate::xdp::prepare_container(&r.netns, &r.ifname)?;
    }
    let endpoint = Endpoint {
        ipv4: r.ipv4.octets(),
        mac: plan.mac,
        _pad: [0; 2],
        host_ifindex: veth.index,
        flags: 0,
        ipv6: r.ipv6.map_or([0; 16], |a| a.octets()),
        ipv6_ll: if r.ipv6.is_some() {
            ipam::link_local_for_mac(plan.mac).octets()
        } else {
            [0; 16]
        },
    };
    maps.endpoints.insert(veth.index, endpoint, 0)?;
    maps.endpoint_by_ip.insert(r.ipv4.octets(), veth.index, 0)?;
    if let Some(addr) = r.ipv6 {
        maps.endpoint_by_ip6.insert(addr.octets(), veth.index, 0)?;
    }
    if let Some(host_mac) = veth.mac {
        let local = FdbEntry {
            ifindex: veth.index,
            flags: FDB_F_LOCAL,
            last_seen_ns: 0,
        };
        maps.fdb.insert(MacAddr { octets: host_mac }, local, 0)?;
    }
    for spec in &plan.publish {
        super::publish::install(maps, r, veth.index, spec)?;
    }
    datapath::attach_endpoint(bridge, &r.host_veth)?;
    // Enslave last: until the program is attached, the port carries nothing.
    nl.attach_to_bridge(veth.index, cfg.bridge_ifindex).await
}

/// The container's IPv6 on its interface: address, prefix length, gateway.
type ContainerV6 = (Ipv6Addr, u8, Ipv6Addr);

/// IPv6 settings of the container's interface, written on the netns thread
/// (so /proc/sys/net is the container's). Without IPv6 the interface is
/// kept from chattering it (router solicitations, MLD) onto the bridge, as
/// Docker does; with it, it is a host (no forwarding), takes no router
/// advertisements, forms its link-local address from its MAC (what the
/// datapath's anti-spoofing expects) and skips DAD for addresses ebridge
/// assigns uniquely.
fn container_ipv6_sysctls(ifname: &str, on: bool) -> Result<()> {
    let base = format!("/proc/sys/net/ipv6/conf/{ifname}");
    if !std::path::Path::new(&base).exists() {
        if on {
            anyhow::bail!("the container's kernel has no IPv6 ({base} is missing)");
        }
        return Ok(());
    }
    let settings: &[(&str, &str)] = if on {
        &[
            ("accept_ra", "0"),
            ("forwarding", "0"),
            ("accept_dad", "0"),
            ("addr_gen_mode", "0"),
            ("disable_ipv6", "0"),
        ]
    } else {
        &[("disable_ipv6", "1")]
    };
    for (key, value) in settings {
        let path = format!("{base}/{key}");
        std::fs::write(&path, value).with_context(|| format!("cannot write {path}"))?;
    }
    Ok(())
}

fn configure_container_side(
    netns: &Path,
    ifname: &str,
    ipv4: Ipv4Addr,
    prefix_len: u8,
    gateway: Ipv4Addr,
    v6: Option<ContainerV6>,
) -> Result<()> {
    let ifname = ifname.to_string();
    crate::netlink::in_netns(netns, move |nl| async move {
        container_ipv6_sysctls(&ifname, v6.is_some())?;
        if let Some(lo) = nl.link_by_name("lo").await? {
            nl.set_up(lo.index).await?;
        }
        let link = nl
            .link_by_name(&ifname)
            .await?
            .with_context(|| format!("{ifname} did not appear in the netns"))?;
        nl.add_address(link.index, Ipv4Net::new(ipv4, prefix_len)?)
            .await?;
        if let Some((addr, len, _)) = v6 {
            nl.add_address6(link.index, Ipv6Net::new(addr, len)?)
                .await?;
        }
        nl.set_up(link.index).await?;
        nl.add_default_route(gateway, link.index).await?;
        if let Some((_, _, gw)) = v6 {
            nl.add_default_route6(gw, link.index).await?;
        }
        Ok(())
    })
}

/// Removes an endpoint's entries from the maps: the endpoint, its address,
/// its MAC and every FDB entry on its port (what the container's MAC
/// learned, the host veth's own). Missing ones are fine.
fn forget(
    maps: &mut DatapathMaps,
    ifindex: u32,
    ipv4: Ipv4Addr,
    ipv6: Option<Ipv6Addr>,
    mac: [u8; 6],
) -> Result<()> {
    if maps
        .endpoints
        .get(&ifindex, 0)
        .is_ok_and(|ep| ep.ipv4 == ipv4.octets())
    {
        maps.endpoints.remove(&ifindex)?;
    }
    if maps.endpoint_by_ip.get(&ipv4.octets(), 0).ok() == Some(ifindex) {
        maps.endpoint_by_ip.remove(&ipv4.octets())?;
    }
    if let Some(addr) = ipv6 {
        if maps.endpoint_by_ip6.get(&addr.octets(), 0).ok() == Some(ifindex) {
            maps.endpoint_by_ip6.remove(&addr.octets())?;
        }
    }
    let mut on_port = vec![MacAddr { octets: mac }];
    for item in maps.fdb.iter() {
        let (key, entry) = item?;
        if entry.ifindex == ifindex {
            on_port.push(key);
        }
    }
    for key in &on_port {
        crate::maps::removed_or_absent(maps.fdb.remove(key))?;
    }
    Ok(())
}

pub async fn rm(bridge: &str, name: &str) -> Result<()> {
    let (mut maps, nl) = open_live_bridge(bridge).await?;
    let _lock = state::lock(bridge)?;
    let mut st = state::load(bridge)?;
    let Some(pos) = st.endpoints.iter().position(|e| e.name == name) else {
        let known: Vec<&str> = st.endpoints.iter().map(|e| e.name.as_str()).collect();
        return Err(usage(format!(
            "no endpoint named {name} on bridge {bridge}; known: {}",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )));
    };
    let record = st.endpoints.remove(pos);
    remove_endpoint(bridge, &record, Some(&mut maps), &nl).await?;
    state::save(bridge, &st)?;
    println!("endpoint {name} removed");
    Ok(())
}

/// Undoes `add` for one endpoint, whether or not its veth and namespace
/// still exist (a container's namespace may die first, taking the veth
/// with it). Shared with `down`, which has no maps to clean when the
/// datapath's pins are already gone.
pub async fn remove_endpoint(
    bridge: &str,
    record: &EndpointRecord,
    maps: Option<&mut DatapathMaps>,
    nl: &Netlink,
) -> Result<()> {
    let veth = nl.link_by_name(&record.host_veth).await?;
    if let Some(maps) = maps {
        for spec in record
            .publish
            .iter()
            .filter_map(|p| crate::publish::parse(p).ok())
        {
            super::publish::uninstall(maps, record, &spec)?;
        }
        datapath::detach_endpoint(bridge, &record.host_veth)?;
        crate::nat::forget_address(maps, record.ipv4.into())?;
        if let Some(addr) = record.ipv6 {
            crate::nat::forget_address(maps, addr.into())?;
        }
        let mac = ipam::parse_mac(&record.mac).unwrap_or_default();
        // The maps remember the host veth's index after the veth is gone.
        let ifindex = match &veth {
            Some(veth) => Some(veth.index),
            None => maps.endpoint_by_ip.get(&record.ipv4.octets(), 0).ok(),
        };
        if let Some(ifindex) = ifindex {
            forget(maps, ifindex, record.ipv4, record.ipv6, mac)?;
        }
    }
    if let Some(veth) = veth {
        nl.delete_link(veth.index).await?;
    }
    if record.created_netns {
        if let Some(ns_name) = record.netns.file_name().and_then(|n| n.to_str()) {
            if record.netns.exists() {
                netns::delete(ns_name).await?;
            }
        }
    }
    Ok(())
}

/// Removes an endpoint no record names any more (the state was lost, or
/// the attach that made it never got to record it), found by its host
/// veth: its published ports, flows, map entries, link pin and the veth.
/// Returns whether there was one.
pub async fn remove_unrecorded(
    bridge: &str,
    host_veth: &str,
    maps: &mut DatapathMaps,
    nl: &Netlink,
) -> Result<bool> {
    let Some(link) = nl.link_by_name(host_veth).await? else {
        return Ok(false);
    };
    if let Ok(ep) = maps.endpoints.get(&link.index, 0) {
        let mut ports = Vec::new();
        for item in maps.publish.iter() {
            let (key, target) = item?;
            if target.ifindex == link.index {
                ports.push(key);
            }
        }
        for key in &ports {
            crate::maps::removed_or_absent(maps.publish.remove(key))?;
        }
        let ip = Ipv4Addr::from(ep.ipv4);
        crate::nat::forget_address(maps, ip.into())?;
        let ip6 = (ep.ipv6 != [0; 16]).then(|| Ipv6Addr::from(ep.ipv6));
        if let Some(addr) = ip6 {
            crate::nat::forget_address(maps, addr.into())?;
        }
        forget(maps, link.index, ip, ip6, ep.mac)?;
    }
    datapath::detach_endpoint(bridge, host_veth)?;
    nl.delete_link(link.index).await?;
    Ok(true)
}

pub async fn ls(bridge: &str, json: bool) -> Result<()> {
    let (maps, _nl) = open_live_bridge(bridge).await?;
    let st = state::load(bridge)?;
    let cfg = maps.read_config()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&st.endpoints)?);
        return Ok(());
    }
    let v6 = cfg.flags & CONFIG_F_IPV6 != 0;
    println!(
        "{:<20} {:<24} {:<15} {:<18} {}{:<17} CONTAINER",
        "NAME",
        "NETNS",
        "VETH",
        "IP",
        if v6 {
            format!("{:<30} ", "IP6")
        } else {
            String::new()
        },
        "MAC"
    );
    for e in &st.endpoints {
        // Shortened like `docker ps`; the full ID is in --json.
        let container = e
            .container_id
            .as_deref()
            .map_or("-", |id| &id[..id.len().min(12)]);
        let ip6 = match (v6, e.ipv6) {
            (false, _) => String::new(),
            (true, Some(a)) => format!("{:<30} ", format!("{a}/{}", cfg.subnet6_prefix_len)),
            (true, None) => format!("{:<30} ", "-"),
        };
        println!(
            "{:<20} {:<24} {:<15} {:<18} {ip6}{:<17} {container}",
            e.name,
            e.netns.display(),
            e.host_veth,
            format!("{}/{}", e.ipv4, cfg.subnet_prefix_len),
            e.mac
        );
    }
    Ok(())
}
