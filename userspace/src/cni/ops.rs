//! ADD, DEL, CHECK, STATUS and GC. An attachment's identity is (container
//! ID, ifname): its host veth name is derived from them, so DEL finds what
//! is left of it even when ebridge's state was lost (a reboot, a lost
//! /run), and never depends on an ADD having succeeded.
use std::{net::Ipv4Addr, path::Path};

use ipnet::{IpNet, Ipv4Net};
use rscni_types::{
    error::Error,
    types::{CNIResult, Cmd, Interface, IpConfig, Route},
    version::{PluginInfo, SpecVersion},
};
use sha2::{Digest as _, Sha256};

use super::{
    config::{self, NetworkConfig},
    env::CniEnv,
    ipam, to_cni,
};
use crate::{
    cmd::{endpoint, up},
    ipam as ebridge_ipam,
    maps::{self, DatapathMaps},
    netlink::Netlink,
    netns, pins,
    publish::{self, PublishSpec},
    state,
};

/// Runs the call; an ADD's result with the version to write it in.
pub async fn run(env: &CniEnv, stdin: &[u8]) -> Result<Option<(SpecVersion, CNIResult)>, Error> {
    let cfg = config::parse(stdin)?;
    let version = PluginInfo::default().negotiate(&cfg.net, env.command)?;
    match env.command {
        Cmd::Add => add(env, stdin, &cfg).await.map(|r| Some((version, r))),
        Cmd::Del => del(env, stdin, &cfg).await.map(|()| None),
        Cmd::Check => check(env, stdin, &cfg).await.map(|()| None),
        Cmd::Status => status(&cfg).await.map(|()| None),
        Cmd::Gc => gc(env, stdin, &cfg).await.map(|()| None),
        Cmd::Version => Ok(None),
    }
}

/// The host veth of an attachment: the same for the same (container ID,
/// ifname) on every call, whatever ebridge remembers.
pub fn host_veth_name(container_id: &str, ifname: &str) -> String {
    let digest = Sha256::digest(format!("{container_id}:{ifname}").as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("eb{hex}")
}

/// The endpoint's name in `endpoint ls`; ':' cannot occur in either part,
/// so distinct attachments never share one.
fn endpoint_name(container_id: &str, ifname: &str) -> String {
    format!("{container_id}:{ifname}")
}

fn is_attachment(record: &state::EndpointRecord, container_id: &str, ifname: &str) -> bool {
    record.container_id.as_deref() == Some(container_id) && record.ifname == ifname
}

async fn add(env: &CniEnv, stdin: &[u8], cfg: &NetworkConfig) -> Result<CNIResult, Error> {
    let wanted = config::wanted(&env.args, cfg.net.runtime_config.as_ref())?;
    let publish = port_mappings(cfg)?;
    let netns = env
        .netns
        .clone()
        .ok_or_else(|| Error::missing_env(&["CNI_NETNS"]))?;
    let nl = Netlink::connect().map_err(to_cni)?;
    // One ADD or DEL at a time per bridge: the first ADD may bring the
    // datapath up, and addresses are handed out from the maps.
    let _lock = up::lock(&nl, &cfg.up.bridge).await.map_err(to_cni)?;
    let lease = match &cfg.ipam {
        Some(ipam) => Some(ipam::add(&ipam.r#type, env, stdin)?),
        None => None,
    };
    let made = attach(env, cfg, &nl, &netns, wanted, publish, lease).await;
    if made.is_err() {
        if let Some(ipam) = &cfg.ipam {
            // Nothing half-made: the reservation goes too.
            let _ = ipam::del(&ipam.r#type, env, stdin);
        }
    }
    made
}

/// `runtimeConfig.portMappings` as `-p` specs.
fn port_mappings(cfg: &NetworkConfig) -> Result<Vec<PublishSpec>, Error> {
    let Some(rt) = &cfg.net.runtime_config else {
        return Ok(Vec::new());
    };
    rt.port_mappings
        .iter()
        .map(|pm| {
            let proto = match pm.protocol {
                None | Some(rscni_types::types::Protocol::Tcp) => "tcp",
                Some(rscni_types::types::Protocol::Udp) => "udp",
                Some(rscni_types::types::Protocol::Sctp) => {
                    return Err(Error::InvalidNetworkConfig(format!(
                        "runtimeConfig.portMappings: {}:{}/sctp; ebridge publishes tcp and udp",
                        pm.host_port, pm.container_port
                    )))
                }
            };
            let host_ip = match pm.custom.get("hostIP").and_then(|v| v.as_str()) {
                // "" and 0.0.0.0 both mean every address, as for portmap.
                Some(ip) if !ip.is_empty() && ip != "0.0.0.0" => {
                    if ip.contains(':') {
                        format!("[{ip}]:")
                    } else {
                        format!("{ip}:")
                    }
                }
                _ => String::new(),
            };
            let spec = format!("{host_ip}{}:{}/{proto}", pm.host_port, pm.container_port);
            publish::parse(&spec).map_err(|e| {
                Error::InvalidNetworkConfig(format!("runtimeConfig.portMappings: {e}"))
            })
        })
        .collect()
}

async fn attach(
    env: &CniEnv,
    cfg: &NetworkConfig,
    nl: &Netlink,
    netns: &Path,
    wanted: config::Wanted,
    publish: Vec<PublishSpec>,
    lease: Option<ipam::Lease>,
) -> Result<CNIResult, Error> {
    let mut req = cfg.up.clone();
    if let Some(lease) = &lease {
        // The IPAM plugin's networks are the bridge's.
        req.subnet = Some(lease.address.trunc().to_string());
        req.gateway = lease.gateway.map(|g| g.to_string());
        if let Some((net6, gw6)) = lease.v6 {
            req.subnet_v6 = Some(net6.trunc().to_string());
            req.gateway_v6 = gw6.map(|g| g.to_string());
        }
    }
    up::ensure(nl, &req).await.map_err(to_cni)?;
    let bridge = &req.bridge;
    let mut maps = DatapathMaps::open(bridge).map_err(to_cni)?;
    let mut st = state::load(bridge).map_err(to_cni)?;
    if st
        .endpoints
        .iter()
        .any(|r| is_attachment(r, &env.container_id, &env.ifname))
    {
        return Err(Error::InvalidNetworkConfig(format!(
            "container {} already has {} on network {}; DEL it first",
            env.container_id, env.ifname, cfg.net.name
        )));
    }
    let request = endpoint::Request {
        name: endpoint_name(&env.container_id, &env.ifname),
        netns: Some(netns.to_path_buf()),
        ip: lease.as_ref().map(|l| l.address.addr()).or(wanted.ip),
        ip6: lease
            .as_ref()
            .and_then(|l| l.v6.map(|(net, _)| net.addr()))
            .or(wanted.ip6),
        mac: wanted.mac,
        ifname: env.ifname.clone(),
        publish,
        check_listeners: false,
        container_id: Some(env.container_id.clone()),
        host_veth: Some(host_veth_name(&env.container_id, &env.ifname)),
    };
    let made = endpoint::attach(bridge, request, &mut st, &mut maps, nl)
        .await
        .map_err(to_cni)?;
    state::save(bridge, &st).map_err(to_cni)?;
    result(cfg, nl, bridge, &made, netns).await.map_err(to_cni)
}

/// What the runtime (and any plugin chained after ebridge) learns: the
/// bridge, the host veth and the container's interface, its address on
/// that interface with the gateway, the default route and the DNS settings.
async fn result(
    cfg: &NetworkConfig,
    nl: &Netlink,
    bridge: &str,
    made: &endpoint::Attached,
    netns: &Path,
) -> anyhow::Result<CNIResult> {
    let mac_of = |link: Option<crate::netlink::Link>| {
        link.and_then(|l| l.mac)
            .map(|m| ebridge_ipam::format_mac(&m))
            .unwrap_or_default()
    };
    let r = &made.record;
    let bridge_mac = mac_of(nl.link_by_name(bridge).await?);
    let veth_mac = mac_of(nl.link_by_name(&r.host_veth).await?);
    let iface = |name: &str, mac: String, sandbox: Option<String>, mtu: Option<u32>| Interface {
        name: name.to_string(),
        mac,
        mtu,
        sandbox,
        socket_path: None,
        pci_id: None,
    };
    let gateway = std::net::IpAddr::V4(made.gateway);
    let mut ips = vec![IpConfig {
        interface: Some(2),
        address: IpNet::V4(Ipv4Net::new(r.ipv4, made.prefix_len)?),
        gateway: Some(gateway),
    }];
    let mut routes = vec![Route {
        dst: IpNet::V4(Ipv4Net::default()),
        gw: Some(gateway),
        mtu: None,
        advmss: None,
        priority: None,
        table: None,
        scope: None,
    }];
    if let (Some(addr), Some((len, gw6))) = (r.ipv6, made.v6) {
        let gw6 = std::net::IpAddr::V6(gw6);
        ips.push(IpConfig {
            interface: Some(2),
            address: IpNet::V6(ipnet::Ipv6Net::new(addr, len)?),
            gateway: Some(gw6),
        });
        routes.push(Route {
            dst: IpNet::V6(ipnet::Ipv6Net::default()),
            gw: Some(gw6),
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        });
    }
    Ok(CNIResult {
        interfaces: vec![
            iface(bridge, bridge_mac, None, None),
            iface(&r.host_veth, veth_mac, None, None),
            iface(
                &r.ifname,
                r.mac.clone(),
                Some(netns.display().to_string()),
                Some(made.mtu),
            ),
        ],
        ips,
        routes,
        dns: cfg.dns.clone(),
    })
}

/// Removes whatever is left of the attachment, and succeeds when nothing
/// is: the namespace gone (containerd sends no CNI_NETNS), never attached,
/// or all state lost.
async fn del(env: &CniEnv, stdin: &[u8], cfg: &NetworkConfig) -> Result<(), Error> {
    let bridge = &cfg.up.bridge;
    let nl = Netlink::connect().map_err(to_cni)?;
    if maps::is_pinned(bridge) {
        let _lock = state::lock(bridge).map_err(to_cni)?;
        let mut maps = DatapathMaps::open(bridge).map_err(to_cni)?;
        let cfg_map = maps.read_config().map_err(to_cni)?;
        // A bridge of that name in another namespace is not ours to touch.
        if cfg_map.netns_inode == netns::current_inode().map_err(to_cni)? {
            detach(bridge, &env.container_id, &env.ifname, &mut maps, &nl).await?;
        }
    } else if let Some(link) = nl
        .link_by_name(&host_veth_name(&env.container_id, &env.ifname))
        .await
        .map_err(to_cni)?
    {
        // No datapath (a reboot, or it was taken down): just the veth.
        nl.delete_link(link.index).await.map_err(to_cni)?;
    }
    if let Some(ipam) = &cfg.ipam {
        ipam::del(&ipam.r#type, env, stdin)?;
    }
    Ok(())
}

/// Removes one attachment from a live bridge (the caller holds its lock):
/// by its record, or by its derived host veth when no record names it.
async fn detach(
    bridge: &str,
    container_id: &str,
    ifname: &str,
    maps: &mut DatapathMaps,
    nl: &Netlink,
) -> Result<(), Error> {
    let mut st = state::load(bridge).map_err(to_cni)?;
    match st
        .endpoints
        .iter()
        .position(|r| is_attachment(r, container_id, ifname))
    {
        Some(pos) => {
            let record = st.endpoints.remove(pos);
            endpoint::remove_endpoint(bridge, &record, Some(maps), nl)
                .await
                .map_err(to_cni)?;
            state::save(bridge, &st).map_err(to_cni)?;
        }
        None => {
            endpoint::remove_unrecorded(bridge, &host_veth_name(container_id, ifname), maps, nl)
                .await
                .map_err(to_cni)?;
        }
    }
    Ok(())
}

/// Verifies the attachment against what ADD made and the runtime's cached
/// result: an error names the first thing that differs.
async fn check(env: &CniEnv, stdin: &[u8], cfg: &NetworkConfig) -> Result<(), Error> {
    let prev = cfg.net.prev_result.as_ref().ok_or_else(|| {
        Error::InvalidNetworkConfig("CHECK needs prevResult (the ADD's result)".to_string())
    })?;
    let bridge = &cfg.up.bridge;
    let differs = |what: String| Error::Custom(101, "attachment differs".to_string(), what);
    if !maps::is_pinned(bridge) {
        return Err(differs(format!("bridge {bridge} is not up")));
    }
    let st = state::load(bridge).map_err(to_cni)?;
    let record = st
        .endpoints
        .iter()
        .find(|r| is_attachment(r, &env.container_id, &env.ifname))
        .ok_or_else(|| {
            Error::NotExist(format!(
                "no attachment of container {} ({}) on bridge {bridge}",
                env.container_id, env.ifname
            ))
        })?;
    let maps = DatapathMaps::open(bridge).map_err(to_cni)?;
    let live = maps.read_config().map_err(to_cni)?;
    let prefix = live.subnet_prefix_len as u8;
    let gateway = Ipv4Addr::from(live.gateway_ipv4);
    let address = Ipv4Net::new(record.ipv4, prefix).map_err(|e| to_cni(e.into()))?;
    if !prev.ips.iter().any(|ip| ip.address == IpNet::V4(address)) {
        return Err(differs(format!(
            "prevResult does not list {address}, the address ebridge gave"
        )));
    }
    // The container's side, seen from inside its namespace.
    let netns = env
        .netns
        .clone()
        .ok_or_else(|| Error::missing_env(&["CNI_NETNS"]))?;
    let ifname = record.ifname.clone();
    let inside = crate::netlink::in_netns(&netns, move |nl| async move {
        let link = nl.link_by_name(&ifname).await?;
        let addrs = nl.ipv4_addresses().await?;
        let routes = nl.ipv4_routes().await?;
        Ok((link, addrs, routes))
    })
    .map_err(|e| Error::InvalidNetNS(format!("{}: {e:#}", netns.display())))?;
    let (link, addrs, routes) = inside;
    let link = link.ok_or_else(|| {
        differs(format!(
            "{} has no interface {}",
            netns.display(),
            record.ifname
        ))
    })?;
    let mac = link
        .mac
        .map(|m| ebridge_ipam::format_mac(&m))
        .unwrap_or_default();
    if mac != record.mac {
        return Err(differs(format!(
            "{} has MAC {mac}, ebridge gave {}",
            record.ifname, record.mac
        )));
    }
    if link.mtu != Some(live.mtu) {
        return Err(differs(format!(
            "{} has MTU {:?}, the bridge's is {}",
            record.ifname, link.mtu, live.mtu
        )));
    }
    if !addrs
        .iter()
        .any(|a| a.link_index == link.index && a.net == address)
    {
        return Err(differs(format!(
            "{} lacks its address {address}",
            record.ifname
        )));
    }
    if !routes.iter().any(|r| {
        r.destination.prefix_len() == 0 && r.gateway == Some(gateway) && r.oif == Some(link.index)
    }) {
        return Err(differs(format!(
            "no default route via {gateway} on {}",
            record.ifname
        )));
    }
    // The node's side: the veth on the bridge with its program, the maps.
    let nl = Netlink::connect().map_err(to_cni)?;
    let veth = nl
        .link_by_name(&record.host_veth)
        .await
        .map_err(to_cni)?
        .ok_or_else(|| differs(format!("host veth {} is gone", record.host_veth)))?;
    if veth.controller != Some(live.bridge_ifindex) {
        return Err(differs(format!(
            "host veth {} is not a port of bridge {bridge}",
            record.host_veth
        )));
    }
    if !pins::link_path(bridge, &record.host_veth).exists() {
        return Err(differs(format!(
            "the endpoint program is not attached to {}",
            record.host_veth
        )));
    }
    let ep = maps.endpoints.get(&veth.index, 0).map_err(|_| {
        differs(format!(
            "the endpoints map has no entry for {}",
            record.host_veth
        ))
    })?;
    if ep.ipv4 != record.ipv4.octets() || ebridge_ipam::format_mac(&ep.mac) != record.mac {
        return Err(differs(format!(
            "the endpoints map says {} {} for {}",
            Ipv4Addr::from(ep.ipv4),
            ebridge_ipam::format_mac(&ep.mac),
            record.host_veth
        )));
    }
    if maps.endpoint_by_ip.get(&record.ipv4.octets(), 0).ok() != Some(veth.index) {
        return Err(differs(format!(
            "endpoint_by_ip does not lead {} to {}",
            record.ipv4, record.host_veth
        )));
    }
    for spec in record.publish.iter().filter_map(|p| publish::parse(p).ok()) {
        let mac = ep.mac;
        let want = crate::cmd::publish::port_entries(&spec, record, veth.index, mac);
        let v4_ok = want
            .v4
            .iter()
            .all(|(k, t)| maps.publish.get(k, 0).ok().as_ref() == Some(t));
        let v6_ok = want
            .v6
            .iter()
            .all(|(k, t)| maps.publish6.get(k, 0).ok().as_ref() == Some(t));
        if !(v4_ok && v6_ok) {
            return Err(differs(format!(
                "published port {spec} is not in the datapath"
            )));
        }
    }
    if let Some(ipam) = &cfg.ipam {
        ipam::check(&ipam.r#type, env, stdin)?;
    }
    Ok(())
}

/// Whether an ADD could work now: kernel features, bpffs, and a pinned
/// datapath that is whole if there is one. Failure is code 50.
async fn status(cfg: &NetworkConfig) -> Result<(), Error> {
    let unavailable = |why: String| Error::PluginNotAvailable(why);
    if unsafe { libc::geteuid() } != 0 {
        return Err(unavailable("the plugin must run as root".to_string()));
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(unavailable(
            "the kernel has no BTF (/sys/kernel/btf/vmlinux); ebridge's programs need it"
                .to_string(),
        ));
    }
    pins::ensure_bpffs().map_err(|e| unavailable(format!("bpffs: {e:#}")))?;
    let bridge = &cfg.up.bridge;
    if !maps::is_pinned(bridge) {
        return Ok(());
    }
    let maps = DatapathMaps::open(bridge)
        .map_err(|e| unavailable(format!("bridge {bridge}'s pinned maps: {e:#}")))?;
    let live = maps
        .read_config()
        .map_err(|e| unavailable(format!("bridge {bridge}'s config: {e:#}")))?;
    let nl = Netlink::connect().map_err(to_cni)?;
    match nl.link_by_index(live.bridge_ifindex).await.map_err(to_cni)? {
        Some(link) if link.name == *bridge => {}
        _ => {
            return Err(unavailable(format!(
                "bridge {bridge} is pinned but its device is gone; run 'ebridge down --bridge {bridge}'"
            )))
        }
    }
    for name in ebridge_common::maps::PINNED_MAPS {
        if !pins::map_path(bridge, name).exists() {
            return Err(unavailable(format!("bridge {bridge} lacks its map {name}")));
        }
    }
    for link in ["uplink-ingress", "uplink-egress"] {
        if !pins::link_path(bridge, link).exists() {
            return Err(unavailable(format!(
                "bridge {bridge}'s {link} program is not attached"
            )));
        }
    }
    Ok(())
}

/// Removes every attachment of this network's bridge that a runtime made
/// and no longer lists in `cni.dev/valid-attachments`, with its ports,
/// flows and IPAM reservation. Endpoints made with `ebridge endpoint add`
/// are not the runtime's to collect.
async fn gc(env: &CniEnv, stdin: &[u8], cfg: &NetworkConfig) -> Result<(), Error> {
    let bridge = &cfg.up.bridge;
    if !maps::is_pinned(bridge) {
        return Ok(());
    }
    let valid = cfg.net.valid_attachments.clone().unwrap_or_default();
    let nl = Netlink::connect().map_err(to_cni)?;
    let _lock = state::lock(bridge).map_err(to_cni)?;
    let mut maps = DatapathMaps::open(bridge).map_err(to_cni)?;
    let st = state::load(bridge).map_err(to_cni)?;
    let stale: Vec<(String, String)> = st
        .endpoints
        .iter()
        .filter_map(|r| Some((r.container_id.clone()?, r.ifname.clone())))
        .filter(|(id, ifname)| {
            !valid
                .iter()
                .any(|a| a.container_id == *id && a.ifname == *ifname)
        })
        .collect();
    for (id, ifname) in stale {
        detach(bridge, &id, &ifname, &mut maps, &nl).await?;
        if let Some(ipam) = &cfg.ipam {
            let theirs = CniEnv {
                command: Cmd::Del,
                container_id: id,
                netns: None,
                ifname,
                args: Vec::new(),
                path: env.path.clone(),
            };
            ipam::del(&ipam.r#type, &theirs, stdin)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_veth_names_are_stable_and_fit() {
        let a = host_veth_name("0123456789abcdef", "eth0");
        assert_eq!(a, host_veth_name("0123456789abcdef", "eth0"));
        assert_ne!(a, host_veth_name("0123456789abcdef", "eth1"));
        assert!(a.len() <= 15 && a.starts_with("eb"), "{a}");
        // Pinned: a DEL after an upgrade must find what an ADD made before.
        assert_eq!(host_veth_name("default-web", "eth0"), "eb8f8e4fd7d277");
    }
}
