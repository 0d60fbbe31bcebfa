//! The NAT table seen from userspace: listing flows (`show nat`), expiring
//! them by protocol state and idle time (the agent), and forgetting the
//! flows of a removed endpoint.
use std::{
    collections::HashMap,
    hash::Hash,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use anyhow::Result;
use ebridge_common::nat::*;
use serde::Serialize;

use crate::maps::DatapathMaps;

/// An address type the NAT tables are keyed by: `[u8; 4]` (`nat`) or
/// `[u8; 16]` (`nat6`); the same pairing, expiry and views serve both.
pub trait NatAddr: Copy + Default + Eq + Hash + bytemuck::Pod + std::fmt::Debug {
    fn ip(self) -> IpAddr;
    fn entries(maps: &DatapathMaps) -> Result<Vec<(NatKeyOf<Self>, NatEntryOf<Self>)>>;
    fn remove_all(maps: &DatapathMaps, keys: &[NatKeyOf<Self>]) -> Result<()>;
}

impl NatAddr for [u8; 4] {
    fn ip(self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(self))
    }
    fn entries(maps: &DatapathMaps) -> Result<Vec<(NatKey, NatEntry)>> {
        maps.nat_entries()
    }
    fn remove_all(maps: &DatapathMaps, keys: &[NatKey]) -> Result<()> {
        maps.nat_remove_all(keys)
    }
}

impl NatAddr for [u8; 16] {
    fn ip(self) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from(self))
    }
    fn entries(maps: &DatapathMaps) -> Result<Vec<(Nat6Key, Nat6Entry)>> {
        maps.nat6_entries()
    }
    fn remove_all(maps: &DatapathMaps, keys: &[Nat6Key]) -> Result<()> {
        maps.nat6_remove_all(keys)
    }
}

/// Idle timeouts, named and defaulted like the kernel's conntrack sysctls
/// (`nf_conntrack_tcp_timeout_*`, `nf_conntrack_udp_timeout*`, `..._icmp_timeout`).
#[derive(Clone, Debug)]
pub struct Timeouts {
    pub tcp_syn_sent: Duration,
    pub tcp_established: Duration,
    pub tcp_fin_wait: Duration,
    pub tcp_time_wait: Duration,
    pub tcp_close: Duration,
    pub udp: Duration,
    pub udp_stream: Duration,
    pub icmp: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            tcp_syn_sent: Duration::from_secs(120),
            tcp_established: Duration::from_secs(432_000),
            tcp_fin_wait: Duration::from_secs(120),
            tcp_time_wait: Duration::from_secs(120),
            tcp_close: Duration::from_secs(10),
            udp: Duration::from_secs(30),
            udp_stream: Duration::from_secs(120),
            icmp: Duration::from_secs(30),
        }
    }
}

impl Timeouts {
    pub fn for_flow(&self, proto: u8, state: u8, flags: u8) -> Duration {
        match proto {
            IPPROTO_TCP => match state {
                CT_ESTABLISHED => self.tcp_established,
                CT_FIN_WAIT => self.tcp_fin_wait,
                CT_CLOSING => self.tcp_time_wait,
                CT_CLOSED => self.tcp_close,
                _ => self.tcp_syn_sent,
            },
            IPPROTO_UDP if flags & NAT_F_REPLIED != 0 => self.udp_stream,
            IPPROTO_UDP => self.udp,
            _ => self.icmp,
        }
    }
}

/// One flow: both entries, as `conntrack -L` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct FlowView {
    /// "container", "node" (the node's own flow, held so no container
    /// takes its tuple) or "other-bridge" (another bridge's on the uplink).
    pub owner: &'static str,
    pub proto: &'static str,
    pub state: &'static str,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub nat_src: IpAddr,
    pub nat_sport: u16,
    pub age_secs: f64,
    pub idle_secs: f64,
    pub packets: u64,
    pub bytes: u64,
    pub reply_packets: u64,
    pub reply_bytes: u64,
}

struct Pair<A> {
    original: (NatKeyOf<A>, NatEntryOf<A>),
    reply: Option<(NatKeyOf<A>, NatEntryOf<A>)>,
}

/// A node's (or another bridge's) flow whose tuple was free: one entry,
/// keyed by its replies, naming its own port. It is the whole flow.
fn is_reservation<A>(key: &NatKeyOf<A>, entry: &NatEntryOf<A>) -> bool {
    entry.owner != OWNER_CONTAINER && key.dir == DIR_REPLY && entry.port == key.dport
}

/// The other entry of a flow. Hairpin flows have two container-side
/// entries, each naming the other's tuple as its rewrite.
fn reply_key_of<A: NatAddr>(key: &NatKeyOf<A>, entry: &NatEntryOf<A>) -> NatKeyOf<A> {
    if entry.flags & NAT_F_HAIRPIN != 0 {
        return NatKeyOf {
            saddr: entry.daddr,
            daddr: entry.addr,
            sport: entry.dport,
            dport: entry.port,
            proto: key.proto,
            dir: DIR_ORIGINAL,
            _pad: [0; 2],
        };
    }
    NatKeyOf {
        saddr: key.daddr,
        daddr: entry.addr,
        sport: key.dport,
        dport: entry.port,
        proto: key.proto,
        dir: DIR_REPLY,
        _pad: [0; 2],
    }
}

/// Reads the whole table once and pairs original with reply entries.
/// Both entries of every flow, and entries whose partner is gone.
type Paired<A> = (Vec<Pair<A>>, Vec<(NatKeyOf<A>, NatEntryOf<A>)>);

fn pairs<A: NatAddr>(maps: &DatapathMaps) -> Result<Paired<A>> {
    let mut originals = Vec::new();
    let mut replies = HashMap::new();
    let mut out = Vec::new();
    for (key, entry) in A::entries(maps)? {
        // A hairpin flow's back entry (target → gateway) pairs with the
        // client's entry like a reply does.
        let back = entry.flags & NAT_F_BACK != 0;
        if is_reservation(&key, &entry) {
            out.push(Pair {
                original: (key, entry),
                reply: None,
            });
        } else if (key.dir == DIR_ORIGINAL && !back) || key.dir == DIR_NODE {
            originals.push((key, entry));
        } else {
            replies.insert(key, entry);
        }
    }
    for (key, entry) in originals {
        let rkey = reply_key_of(&key, &entry);
        let reply = replies.remove(&rkey).map(|e| (rkey, e));
        out.push(Pair {
            original: (key, entry),
            reply,
        });
    }
    Ok((out, replies.into_iter().collect()))
}

/// TCP state of a flow. The datapath keeps it in the original entry; a
/// hairpin flow's two sides each track what their container sent, so they
/// are combined here.
fn flow_state<A>(original: &NatEntryOf<A>, reply: Option<&NatEntryOf<A>>) -> (u8, u8) {
    let Some(back) = reply.filter(|_| original.flags & NAT_F_HAIRPIN != 0) else {
        return (original.state, original.flags);
    };
    let mut flags = original.flags | back.flags;
    if back.flags & NAT_F_FIN_ORIGINAL != 0 {
        flags |= NAT_F_FIN_REPLY;
    }
    if back.packets > 0 {
        flags |= NAT_F_REPLIED;
    }
    let fin_both = original.flags & NAT_F_FIN_ORIGINAL != 0 && back.flags & NAT_F_FIN_ORIGINAL != 0;
    let state = if original.state == CT_CLOSED || back.state == CT_CLOSED {
        CT_CLOSED
    } else if fin_both {
        CT_CLOSING
    } else if flags & (NAT_F_FIN_ORIGINAL | NAT_F_FIN_REPLY) != 0 {
        CT_FIN_WAIT
    } else if back.packets > 0 && original.packets > 1 {
        CT_ESTABLISHED
    } else {
        original.state
    };
    (state, flags)
}

fn port(raw: u16) -> u16 {
    u16::from_be(raw)
}

/// Every flow of both tables, IPv4 first.
pub fn list(maps: &DatapathMaps, now_ns: u64) -> Result<Vec<FlowView>> {
    let mut flows = list_of::<[u8; 4]>(maps, now_ns)?;
    flows.extend(list_of::<[u8; 16]>(maps, now_ns)?);
    flows.sort_by_key(|f| (f.src, f.sport, f.dst, f.dport));
    Ok(flows)
}

fn list_of<A: NatAddr>(maps: &DatapathMaps, now_ns: u64) -> Result<Vec<FlowView>> {
    let (pairs, _) = pairs::<A>(maps)?;
    Ok(pairs
        .into_iter()
        .map(|p| {
            let (k, e) = p.original;
            if is_reservation(&k, &e) {
                return reservation_view(&k, &e, now_ns);
            }
            flow_view(&k, &e, p.reply.as_ref().map(|(_, r)| r), now_ns)
        })
        .collect())
}

/// A flow of two entries as `conntrack -L` shows it.
fn flow_view<A: NatAddr>(
    k: &NatKeyOf<A>,
    e: &NatEntryOf<A>,
    reply: Option<&NatEntryOf<A>>,
    now_ns: u64,
) -> FlowView {
    let (state, flags) = flow_state(e, reply);
    let (rp, rb, rseen) = reply
        .map(|r| (r.packets, r.bytes, r.last_seen_ns))
        .unwrap_or_default();
    let last = e.last_seen_ns.max(rseen);
    FlowView {
        owner: owner_label(e.owner),
        proto: proto_label(k.proto),
        state: state_label(k.proto, state, flags),
        src: k.saddr.ip(),
        dst: k.daddr.ip(),
        sport: port(k.sport),
        dport: port(k.dport),
        nat_src: e.addr.ip(),
        nat_sport: port(e.port),
        age_secs: now_ns.saturating_sub(e.created_ns) as f64 / 1e9,
        idle_secs: now_ns.saturating_sub(last) as f64 / 1e9,
        packets: e.packets,
        bytes: e.bytes,
        reply_packets: rp,
        reply_bytes: rb,
    }
}

/// A reservation seen from the side that sent it: the node (or the other
/// bridge) at `daddr:dport` of the key, translated to itself. Its one
/// entry counts both directions.
fn reservation_view<A: NatAddr>(k: &NatKeyOf<A>, e: &NatEntryOf<A>, now_ns: u64) -> FlowView {
    FlowView {
        owner: owner_label(e.owner),
        proto: proto_label(k.proto),
        state: state_label(k.proto, e.state, e.flags),
        src: k.daddr.ip(),
        dst: k.saddr.ip(),
        sport: port(k.dport),
        dport: port(k.sport),
        nat_src: k.daddr.ip(),
        nat_sport: port(k.dport),
        age_secs: now_ns.saturating_sub(e.created_ns) as f64 / 1e9,
        idle_secs: now_ns.saturating_sub(e.last_seen_ns) as f64 / 1e9,
        packets: e.packets,
        bytes: e.bytes,
        reply_packets: 0,
        reply_bytes: 0,
    }
}

#[derive(Debug, Default)]
pub struct GcReport {
    pub expired: usize,
    pub orphans: usize,
    pub live: usize,
    /// Entries the table held when the pass read it.
    pub entries: usize,
    /// Live flows by (owner, protocol, state), as the pass found them: what
    /// metrics report without walking the table on a scrape.
    pub live_by: std::collections::BTreeMap<(&'static str, &'static str, &'static str), u64>,
    /// The flows this pass expired, for `ebridge monitor`.
    pub expired_flows: Vec<ExpiredFlow>,
}

/// A flow the GC removed, as `ebridge monitor` reports it.
#[derive(Clone, Debug, Serialize)]
pub struct ExpiredFlow {
    pub owner: &'static str,
    pub proto: &'static str,
    pub state: &'static str,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
    pub nat_src: IpAddr,
    pub nat_sport: u16,
}

/// Reply entries younger than this may belong to a flow whose original
/// entry is being inserted right now (the datapath inserts reply first).
const ORPHAN_GRACE_NS: u64 = 2_000_000_000;

/// Deletes flows idle longer than their timeout (both entries, in one
/// batch) and entries whose partner has been gone for a while. A packet of
/// an expiring flow that slips in between finds half a pair: a new
/// original entry claims a fresh port, as after any expiry.
pub fn gc(maps: &mut DatapathMaps, timeouts: &Timeouts, now_ns: u64) -> Result<GcReport> {
    let mut report = GcReport::default();
    gc_of::<[u8; 4]>(maps, timeouts, now_ns, &mut report)?;
    gc_of::<[u8; 16]>(maps, timeouts, now_ns, &mut report)?;
    Ok(report)
}

fn gc_of<A: NatAddr>(
    maps: &mut DatapathMaps,
    timeouts: &Timeouts,
    now_ns: u64,
    report: &mut GcReport,
) -> Result<()> {
    let (pairs, orphans) = pairs::<A>(maps)?;
    report.entries += pairs
        .iter()
        .map(|p| 1 + usize::from(p.reply.is_some()))
        .sum::<usize>()
        + orphans.len();
    let mut doomed = Vec::new();
    for p in pairs {
        let (key, entry) = p.original;
        let last = p.reply.as_ref().map_or(entry.last_seen_ns, |(_, r)| {
            r.last_seen_ns.max(entry.last_seen_ns)
        });
        let (state, flags) = flow_state(&entry, p.reply.as_ref().map(|(_, r)| r));
        let timeout = timeouts.for_flow(key.proto, state, flags);
        let labels = (
            owner_label(entry.owner),
            proto_label(key.proto),
            state_label(key.proto, state, flags),
        );
        if now_ns.saturating_sub(last) > timeout.as_nanos() as u64 {
            let view = if is_reservation(&key, &entry) {
                reservation_view(&key, &entry, now_ns)
            } else {
                flow_view(&key, &entry, p.reply.as_ref().map(|(_, r)| r), now_ns)
            };
            report.expired_flows.push(ExpiredFlow {
                owner: labels.0,
                proto: labels.1,
                state: labels.2,
                src: view.src,
                sport: view.sport,
                dst: view.dst,
                dport: view.dport,
                nat_src: view.nat_src,
                nat_sport: view.nat_sport,
            });
            doomed.push(key);
            if let Some((rkey, _)) = p.reply {
                doomed.push(rkey);
            }
            report.expired += 1;
        } else {
            *report.live_by.entry(labels).or_default() += 1;
            report.live += 1;
        }
    }
    for (key, entry) in orphans {
        if now_ns.saturating_sub(entry.created_ns) > ORPHAN_GRACE_NS {
            doomed.push(key);
            report.orphans += 1;
        }
    }
    A::remove_all(maps, &doomed)?;
    Ok(())
}

/// Removes every entry that names `addr` on either side: a container's
/// whose endpoint is going (masqueraded, inbound and hairpin flows alike),
/// or the uplink's old address after it changed (as MASQUERADE flushes its
/// conntrack entries then).
pub fn forget_address(maps: &mut DatapathMaps, addr: IpAddr) -> Result<usize> {
    match addr {
        IpAddr::V4(a) => forget_in::<[u8; 4]>(maps, a.octets()),
        IpAddr::V6(a) => forget_in::<[u8; 16]>(maps, a.octets()),
    }
}

fn forget_in<A: NatAddr>(maps: &DatapathMaps, addr: A) -> Result<usize> {
    let doomed: Vec<NatKeyOf<A>> = A::entries(maps)?
        .into_iter()
        .filter(|(key, entry)| [key.saddr, key.daddr, entry.addr, entry.daddr].contains(&addr))
        .map(|(key, _)| key)
        .collect();
    A::remove_all(maps, &doomed)?;
    Ok(doomed.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_follow_state() {
        let t = Timeouts::default();
        assert_eq!(
            t.for_flow(IPPROTO_TCP, CT_ESTABLISHED, 0),
            Duration::from_secs(432_000)
        );
        assert_eq!(
            t.for_flow(IPPROTO_TCP, CT_CLOSED, 0),
            Duration::from_secs(10)
        );
        assert_eq!(
            t.for_flow(IPPROTO_TCP, CT_CLOSING, 0),
            Duration::from_secs(120)
        );
        assert_eq!(t.for_flow(IPPROTO_UDP, CT_NEW, 0), Duration::from_secs(30));
        assert_eq!(
            t.for_flow(IPPROTO_UDP, CT_NEW, NAT_F_REPLIED),
            Duration::from_secs(120)
        );
        assert_eq!(t.for_flow(IPPROTO_ICMP, CT_NEW, 0), Duration::from_secs(30));
    }

    #[test]
    fn reply_key_mirrors_original() {
        let k = NatKey {
            saddr: [172, 17, 0, 2],
            daddr: [203, 0, 113, 2],
            sport: 1234u16.to_be(),
            dport: 80u16.to_be(),
            proto: IPPROTO_TCP,
            dir: DIR_ORIGINAL,
            _pad: [0; 2],
        };
        let e = NatEntry {
            addr: [198, 51, 100, 1],
            port: 40000u16.to_be(),
            ..Default::default()
        };
        let r = reply_key_of(&k, &e);
        assert_eq!(r.saddr, [203, 0, 113, 2]);
        assert_eq!(r.daddr, [198, 51, 100, 1]);
        assert_eq!(u16::from_be(r.sport), 80);
        assert_eq!(u16::from_be(r.dport), 40000);
        assert_eq!(r.dir, DIR_REPLY);
    }
}
