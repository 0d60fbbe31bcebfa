//! The pinned `nat` map of an ebridge setup, written and counted directly
//! (aya, the types of common/src/nat.rs): a million synthetic live flows
//! for the table-size test, and the number of entries the traffic left.
use std::{net::Ipv4Addr, path::Path, time::Instant};

use anyhow::{Context as _, Result};
use aya::maps::{HashMap, Map, MapData};
use ebridge_common::{maps::MAP_NAT, nat::*};
use serde_json::{json, Value};

use super::{aim::NODE_IP, signal};

type NatMap = HashMap<MapData, NatKey, NatEntry>;

const BPF_NOEXIST: u64 = 1;

fn open(bridge: &str) -> Result<NatMap> {
    let path = Path::new("/sys/fs/bpf/ebridge").join(bridge).join(MAP_NAT);
    let data = MapData::from_pin(&path)
        .with_context(|| format!("cannot open pinned map {}", path.display()))?;
    let map = Map::from_map_data(data)
        .with_context(|| format!("{} is not a map aya knows", path.display()))?;
    NatMap::try_from(map).with_context(|| format!("{} is not the NAT hash map", path.display()))
}

/// CLOCK_MONOTONIC in ns: the clock `bpf_ktime_get_ns` reads, so the
/// synthetic flows look as fresh as real ones to `show nat` and the agent.
pub fn monotonic_ns() -> u64 {
    // SAFETY: a valid out-pointer to a zeroed timespec.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// NAT ports the synthetic flows take, per fake peer: inside the default
/// range whatever it is (32768-60999 before issue 7, 1024-65535 after).
const NAT_PORT_MIN: u32 = 32768;
const PORTS_PER_PEER: u32 = 28000;
/// Synthetic flows come from 172.17.128.0/17 (addresses no endpoint has)
/// and go to 203.0.113.0/24 port 443 (TEST-NET-3, no setup uses it), so
/// neither of their keys can be one of the benchmark's own flows.
const FAKE_CONTAINERS: Ipv4Addr = Ipv4Addr::new(172, 17, 128, 0);
const FAKE_PEERS: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const PEER_PORT: u16 = 443;

fn add(base: Ipv4Addr, n: u32) -> [u8; 4] {
    Ipv4Addr::from(u32::from(base).wrapping_add(n)).octets()
}

/// Flow `i`: an established TCP connection of a fake container, as the
/// datapath records it — the reply entry (which holds the NAT port) and
/// the original entry.
fn synthetic(i: u32, now: u64) -> [(NatKey, NatEntry); 2] {
    let container = add(FAKE_CONTAINERS, i >> 10);
    let sport = (10_000 + (i & 1023) as u16).to_be();
    let peer = add(FAKE_PEERS, i / PORTS_PER_PEER);
    let nat_port = ((NAT_PORT_MIN + i % PORTS_PER_PEER) as u16).to_be();
    let dport = PEER_PORT.to_be();
    let o = container;
    let live = NatEntry {
        state: CT_ESTABLISHED,
        flags: NAT_F_REPLIED,
        created_ns: now,
        last_seen_ns: now,
        packets: 10,
        bytes: 1000,
        ..NatEntry::default()
    };
    let reply = (
        NatKey {
            saddr: peer,
            daddr: NODE_IP.octets(),
            sport: dport,
            dport: nat_port,
            proto: IPPROTO_TCP,
            dir: DIR_REPLY,
            _pad: [0; 2],
        },
        NatEntry {
            addr: container,
            port: sport,
            state: CT_NEW,
            mac: [0x02, 0x42, o[0], o[1], o[2], o[3]],
            ..live
        },
    );
    let original = (
        NatKey {
            saddr: container,
            daddr: peer,
            sport,
            dport,
            proto: IPPROTO_TCP,
            dir: DIR_ORIGINAL,
            _pad: [0; 2],
        },
        NatEntry {
            addr: NODE_IP.octets(),
            port: nat_port,
            ..live
        },
    );
    [reply, original]
}

pub struct Filled {
    pub flows: u32,
    pub entries: u64,
    pub secs: f64,
}

impl Filled {
    pub fn to_json(&self) -> Value {
        json!({
            "flows": self.flows,
            "entries": self.entries,
            "secs": self.secs,
            "entries_per_sec": self.entries as f64 / self.secs.max(1e-9),
            "how": "one BPF_MAP_UPDATE_ELEM (BPF_NOEXIST) per entry from the xtask (aya), reply entry first",
        })
    }
}

/// Writes `flows` synthetic live flows (two entries each).
pub fn fill(bridge: &str, flows: u32) -> Result<Filled> {
    let mut map = open(bridge)?;
    let now = monotonic_ns();
    let started = Instant::now();
    let mut entries = 0u64;
    for i in 0..flows {
        if i % 100_000 == 0 {
            signal::check()?;
        }
        for (key, entry) in synthetic(i, now) {
            map.insert(key, entry, BPF_NOEXIST)
                .with_context(|| format!("nat map of {bridge} refused entry {entries}"))?;
            entries += 1;
        }
    }
    Ok(Filled {
        flows,
        entries,
        secs: started.elapsed().as_secs_f64(),
    })
}

/// Entries in the table.
pub fn count(bridge: &str) -> Result<u64> {
    let map = open(bridge)?;
    let mut n = 0;
    for key in map.keys() {
        key.context("cannot read the nat map")?;
        n += 1;
    }
    Ok(n)
}
