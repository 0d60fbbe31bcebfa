//! Typed handles on the pinned maps, opened by any `ebridge` process.
use anyhow::{Context as _, Result};
use aya::maps::{
    lpm_trie::{Key, LpmTrie},
    Array, HashMap, Map, MapData, PerCpuArray,
};
use ebridge_common::{
    config::BridgeConfig,
    endpoint::Endpoint,
    fdb::{FdbEntry, MacAddr},
    maps::*,
    nat::{
        FragEntry, FragKey, Nat6Entry, Nat6Key, NatEntry, NatKey, NoPortCount, NoPortKey,
        Publish6Key, Publish6Target, PublishKey, PublishTarget,
    },
    stats::Counter,
};
use ipnet::Ipv4Net;

use crate::pins;

pub struct DatapathMaps {
    pub config: Array<MapData, BridgeConfig>,
    pub endpoints: HashMap<MapData, u32, Endpoint>,
    pub endpoint_by_ip: HashMap<MapData, [u8; 4], u32>,
    pub endpoint_by_ip6: HashMap<MapData, [u8; 16], u32>,
    pub fdb: HashMap<MapData, MacAddr, FdbEntry>,
    pub stats: PerCpuArray<MapData, Counter>,
    pub nat: HashMap<MapData, NatKey, NatEntry>,
    pub nat6: HashMap<MapData, Nat6Key, Nat6Entry>,
    pub frags: HashMap<MapData, FragKey, FragEntry>,
    pub publish: HashMap<MapData, PublishKey, PublishTarget>,
    pub node_addrs: HashMap<MapData, [u8; 4], u8>,
    pub publish6: HashMap<MapData, Publish6Key, Publish6Target>,
    pub node_addrs6: HashMap<MapData, [u8; 16], u8>,
    pub nat_no_port: HashMap<MapData, NoPortKey, NoPortCount>,
    pub native_nets: LpmTrie<MapData, [u8; 4], u32>,
    /// The `nat` and `nat6` maps again, for batch reads and deletes
    /// (`batch.rs`).
    nat_raw: MapData,
    nat6_raw: MapData,
}

fn open(bridge: &str, name: &str) -> Result<Map> {
    let path = pins::map_path(bridge, name);
    let data = MapData::from_pin(&path)
        .with_context(|| format!("cannot open pinned map {}", path.display()))?;
    Map::from_map_data(data)
        .with_context(|| format!("map {} has an unexpected type", path.display()))
}

fn raw(bridge: &str, name: &str) -> Result<MapData> {
    let path = pins::map_path(bridge, name);
    MapData::from_pin(&path).with_context(|| format!("cannot open pinned map {}", path.display()))
}

impl DatapathMaps {
    pub fn open(bridge: &str) -> Result<Self> {
        Ok(Self {
            config: open(bridge, MAP_CONFIG)?.try_into()?,
            endpoints: open(bridge, MAP_ENDPOINTS)?.try_into()?,
            endpoint_by_ip: open(bridge, MAP_ENDPOINT_BY_IP)?.try_into()?,
            endpoint_by_ip6: open(bridge, MAP_ENDPOINT_BY_IP6)?.try_into()?,
            fdb: open(bridge, MAP_FDB)?.try_into()?,
            stats: open(bridge, MAP_STATS)?.try_into()?,
            nat: open(bridge, MAP_NAT)?.try_into()?,
            nat6: open(bridge, MAP_NAT6)?.try_into()?,
            frags: open(bridge, MAP_FRAGS)?.try_into()?,
            publish: open(bridge, MAP_PUBLISH)?.try_into()?,
            node_addrs: open(bridge, MAP_NODE_ADDRS)?.try_into()?,
            publish6: open(bridge, MAP_PUBLISH6)?.try_into()?,
            node_addrs6: open(bridge, MAP_NODE_ADDRS6)?.try_into()?,
            nat_no_port: open(bridge, MAP_NAT_NO_PORT)?.try_into()?,
            native_nets: open(bridge, MAP_NATIVE_NETS)?.try_into()?,
            nat_raw: raw(bridge, MAP_NAT)?,
            nat6_raw: raw(bridge, MAP_NAT6)?,
        })
    }

    /// Every NAT table entry, read in batches.
    pub fn nat_entries(&self) -> Result<Vec<(NatKey, NatEntry)>> {
        crate::batch::lookup_all(&self.nat_raw).context("cannot read the nat map")
    }

    /// Deletes NAT entries in batches; ones already gone are fine.
    pub fn nat_remove_all(&self, keys: &[NatKey]) -> Result<()> {
        crate::batch::delete_all(&self.nat_raw, keys).context("cannot delete from the nat map")
    }

    /// Every IPv6 NAT table entry, read in batches.
    pub fn nat6_entries(&self) -> Result<Vec<(Nat6Key, Nat6Entry)>> {
        crate::batch::lookup_all(&self.nat6_raw).context("cannot read the nat6 map")
    }

    pub fn nat6_remove_all(&self, keys: &[Nat6Key]) -> Result<()> {
        crate::batch::delete_all(&self.nat6_raw, keys).context("cannot delete from the nat6 map")
    }

    pub fn read_config(&self) -> Result<BridgeConfig> {
        self.config.get(&0, 0).context("cannot read the config map")
    }

    /// Per-reason counters summed over CPUs.
    pub fn counters(&self) -> Result<Vec<(u32, Counter)>> {
        let mut out = Vec::new();
        for (code, _, _) in ebridge_common::stats::REASONS {
            let per_cpu = self
                .stats
                .get(code, 0)
                .context("cannot read the stats map")?;
            let mut sum = Counter::default();
            for c in per_cpu.iter() {
                sum.packets += c.packets;
                sum.bytes += c.bytes;
            }
            out.push((*code, sum));
        }
        Ok(out)
    }
}

/// True when a datapath for `bridge` has been pinned (by `ebridge up`).
pub fn is_pinned(bridge: &str) -> bool {
    pins::map_path(bridge, MAP_CONFIG).exists()
}

impl DatapathMaps {
    /// Makes `node_addrs` and `node_addrs6` hold exactly the node's
    /// addresses; IPv6 loopback counts (host access to `[::1]:PORT`).
    pub fn sync_node_addrs(
        &mut self,
        addrs: &[std::net::Ipv4Addr],
        addrs6: &[std::net::Ipv6Addr],
    ) -> Result<()> {
        sync_set(&mut self.node_addrs, addrs.iter().map(|a| a.octets()))?;
        let loopback = std::net::Ipv6Addr::LOCALHOST;
        sync_set(
            &mut self.node_addrs6,
            addrs6.iter().chain([&loopback]).map(|a| a.octets()),
        )
    }
}

/// Makes a set-like map hold exactly `want`.
fn sync_set<K: aya::Pod + Eq + std::hash::Hash>(
    map: &mut HashMap<MapData, K, u8>,
    want: impl Iterator<Item = K>,
) -> Result<()> {
    let want: std::collections::HashSet<K> = want.collect();
    let have: Vec<K> = map.keys().collect::<Result<_, _>>()?;
    for a in &have {
        if !want.contains(a) {
            let _ = map.remove(a);
        }
    }
    for a in want {
        map.insert(a, 1, 0)?;
    }
    Ok(())
}

/// A map deletion where "not there" is fine: aya reports it as the
/// syscall's ENOENT (or as `KeyNotFound`); anything else is a real failure.
pub fn removed_or_absent(
    result: Result<(), aya::maps::MapError>,
) -> Result<(), aya::maps::MapError> {
    match result {
        Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        Err(aya::maps::MapError::SyscallError(e))
            if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        other => other,
    }
}

impl DatapathMaps {
    /// Makes `native_nets` hold exactly the native-routing CIDRs and the
    /// node's networks, each prefix with every meaning it has: a node
    /// network inside a native CIDR is routed natively too (an LPM lookup
    /// sees only the longest match).
    pub fn sync_native_nets(&mut self, native: &[Ipv4Net], node_nets: &[Ipv4Net]) -> Result<()> {
        use ebridge_common::routing::{NATIVE_CIDR, NATIVE_GIVEN, NODE_NETWORK};
        let mut want: std::collections::BTreeMap<(u32, [u8; 4]), u32> = Default::default();
        for net in native {
            *want.entry(prefix_key(net)).or_default() |= NATIVE_CIDR | NATIVE_GIVEN;
        }
        for net in node_nets {
            *want.entry(prefix_key(net)).or_default() |= NODE_NETWORK;
        }
        let all: Vec<Ipv4Net> = native.iter().chain(node_nets).copied().collect();
        for ((len, addr), kinds) in want.iter_mut() {
            let this = Ipv4Net::new((*addr).into(), *len as u8)?;
            for wider in &all {
                if wider.prefix_len() < this.prefix_len() && wider.contains(&this.network()) {
                    if native.contains(wider) {
                        *kinds |= NATIVE_CIDR;
                    } else {
                        *kinds |= NODE_NETWORK;
                    }
                }
            }
        }
        let have: Vec<Key<[u8; 4]>> = self.native_nets.keys().collect::<Result<_, _>>()?;
        for key in have {
            if !want.contains_key(&(key.prefix_len(), key.data())) {
                crate::maps::removed_or_absent(self.native_nets.remove(&key))?;
            }
        }
        for ((len, addr), kinds) in want {
            self.native_nets.insert(&Key::new(len, addr), kinds, 0)?;
        }
        Ok(())
    }

    /// The native-routing CIDRs `up` was given.
    pub fn native_cidrs(&self) -> Result<Vec<Ipv4Net>> {
        let mut out = Vec::new();
        for item in self.native_nets.iter() {
            let (key, kinds) = item?;
            if kinds & ebridge_common::routing::NATIVE_GIVEN != 0 {
                out.push(Ipv4Net::new(key.data().into(), key.prefix_len() as u8)?);
            }
        }
        out.sort();
        Ok(out)
    }
}

fn prefix_key(net: &Ipv4Net) -> (u32, [u8; 4]) {
    (u32::from(net.prefix_len()), net.network().octets())
}
