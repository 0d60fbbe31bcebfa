//! Harness for running the datapath's programs (`endpoint_ingress`, and for
//! the NAT tests `uplink_ingress` / `uplink_egress`) under
//! `BPF_PROG_TEST_RUN`.
//!
//! * [`in_private_netns`] runs a test body on its own thread inside a fresh,
//!   anonymous network namespace holding two veth pairs and a bridge. The
//!   kernel resolves `__sk_buff.ifindex` with `dev_get_by_index()` in the
//!   *calling thread's* netns (`current->nsproxy->net_ns`), so the ifindexes
//!   the test passes must exist there. The namespace has no name and no
//!   bind mount: it disappears with the thread, even if the test panics or
//!   the process is killed, and parallel tests never see each other's
//!   devices.
//! * [`Datapath`] loads the embedded object with no pin paths, so every test
//!   gets fresh private maps (the `nat` map shrunk to [`NAT_TEST_ENTRIES`]:
//!   the default size preallocates tens of MB per test).
//! * [`Fixture`] is the usual starting state: ICC on, two endpoints A and B,
//!   the bridge's MAC as a local FDB entry and B already learned.
use std::{ffi::CString, process::Command, thread, time::Duration};

use aya::{
    maps::{Array, HashMap, MapError, PerCpuArray},
    programs::{ProgramError, SchedClassifier},
    Ebpf, EbpfLoader, TestRun, TestRunOptions,
};
use bytemuck::{Pod, Zeroable};
use ebridge::datapath::DATAPATH_OBJECT;
use ebridge_common::{
    config::{BridgeConfig, CONFIG_F_ICC},
    endpoint::Endpoint,
    fdb::{FdbEntry, MacAddr, FDB_F_LOCAL},
    maps::{
        MAP_CONFIG, MAP_ENDPOINTS, MAP_ENDPOINT_BY_IP, MAP_FDB, MAP_FRAGS, MAP_NAT, MAP_STATS,
        PROG_ENDPOINT,
    },
    nat::{FragEntry, FragKey, NatEntry, NatKey},
    stats::{reason_label, Counter, MAX_REASONS},
};

/// `TC_ACT_UNSPEC` (-1): not the program's to keep; the next program in
/// the TCX chain (TCX_NEXT) or, with none left, the kernel gets it.
pub const TC_NEXT: u32 = u32::MAX;
pub const TC_ACT_SHOT: u32 = 2;
pub const TC_ACT_REDIRECT: u32 = 7;

pub const NS_PER_SEC: u64 = 1_000_000_000;
/// Ageing time of the fixture (Docker's bridge uses the Linux default, 300 s).
pub const AGEING_NS: u64 = 300 * NS_PER_SEC;

/// The bridge's own MAC, also the gateway's (172.17.0.1).
pub const BRIDGE_MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x11, 0x00, 0x01];
pub const GATEWAY_IP: [u8; 4] = [172, 17, 0, 1];
pub const MAC_A: [u8; 6] = [0x02, 0x42, 0xac, 0x11, 0x00, 0x02];
pub const IP_A: [u8; 4] = [172, 17, 0, 2];
pub const MAC_B: [u8; 6] = [0x02, 0x42, 0xac, 0x11, 0x00, 0x03];
pub const IP_B: [u8; 4] = [172, 17, 0, 3];
/// A MAC no endpoint owns and the FDB does not know.
/// Endpoints A and B on an IPv6 bridge (`Fixture::with_ipv6`).
pub const IP6_A: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
pub const IP6_B: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3];
pub const GATEWAY_IP6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
pub const IP6_UNKNOWN: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x63];
pub const MAC_UNKNOWN: [u8; 6] = [0x02, 0x42, 0xac, 0x11, 0x00, 0x63];
pub const IP_UNKNOWN: [u8; 4] = [172, 17, 0, 99];
pub const IP_OUTSIDE: [u8; 4] = [198, 51, 100, 2];

// ---- struct __sk_buff ---------------------------------------------------

/// `struct __sk_buff` of this kernel (`bpftool btf dump file
/// /sys/kernel/btf/vmlinux format c`): 192 bytes, `ifindex` at offset 40.
/// `BPF_PROG_TEST_RUN` only accepts non-zero `mark`, `priority`,
/// `ingress_ifindex`, `ifindex`, `cb`, `tstamp`, `wire_len`, `gso_segs`,
/// `gso_size` and `hwtstamp`; anything else makes it fail with EINVAL
/// (`prog_endpoint_ctx.rs` checks that).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SkBuff {
    pub len: u32,
    pub pkt_type: u32,
    pub mark: u32,
    pub queue_mapping: u32,
    pub protocol: u32,
    pub vlan_present: u32,
    pub vlan_tci: u32,
    pub vlan_proto: u32,
    pub priority: u32,
    pub ingress_ifindex: u32,
    pub ifindex: u32,
    pub tc_index: u32,
    pub cb: [u32; 5],
    pub hash: u32,
    pub tc_classid: u32,
    pub data: u32,
    pub data_end: u32,
    pub napi_id: u32,
    pub family: u32,
    pub remote_ip4: u32,
    pub local_ip4: u32,
    pub remote_ip6: [u32; 4],
    pub local_ip6: [u32; 4],
    pub remote_port: u32,
    pub local_port: u32,
    pub data_meta: u32,
    pub flow_keys: u64,
    pub tstamp: u64,
    pub wire_len: u32,
    pub gso_segs: u32,
    pub sk: u64,
    pub gso_size: u32,
    pub tstamp_type: u8,
    pub _pad: [u8; 3],
    pub hwtstamp: u64,
}

const _: () = assert!(std::mem::size_of::<SkBuff>() == 192);
const _: () = assert!(std::mem::offset_of!(SkBuff, ifindex) == 40);
const _: () = assert!(std::mem::offset_of!(SkBuff, hwtstamp) == 184);

impl SkBuff {
    /// A zeroed context whose only field is the ingress device.
    pub fn on(ifindex: u32) -> Self {
        Self {
            ifindex,
            ..Self::default()
        }
    }
}

// ---- private network namespace -----------------------------------------

/// Devices of the test's private namespace.
#[derive(Clone, Copy, Debug)]
pub struct TestNet {
    /// Host-side veth of endpoint A (its peer is `peer_a`).
    pub veth_a: u32,
    pub peer_a: u32,
    /// Host-side veth of endpoint B.
    pub veth_b: u32,
    pub peer_b: u32,
    /// A bridge device, the port of the FDB's local entry.
    pub bridge: u32,
}

/// Runs `body` on a new thread that first moves itself into a new network
/// namespace (`unshare(CLONE_NEWNET)` affects only the calling thread) and
/// creates the devices of [`TestNet`] there with `ip` (a child process
/// inherits its creating thread's namespace). A panic in `body` fails the
/// test with its own message.
pub fn in_private_netns<R: Send>(body: impl FnOnce(&TestNet) -> R + Send) -> R {
    thread::scope(|scope| {
        let worker = thread::Builder::new()
            .name(format!(
                "{}-netns",
                thread::current().name().unwrap_or("packet-test")
            ))
            .spawn_scoped(scope, move || {
                // SAFETY: plain syscall; only this thread changes namespace.
                let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
                assert_eq!(
                    rc,
                    0,
                    "unshare(CLONE_NEWNET): {} (the packet tests need root)",
                    std::io::Error::last_os_error()
                );
                let net = TestNet::create();
                body(&net)
            })
            .expect("cannot spawn the test thread");
        match worker.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

impl TestNet {
    fn create() -> Self {
        ip(&[
            "link",
            "add",
            "ebt-a",
            "type",
            "veth",
            "peer",
            "name",
            "ebt-a-peer",
        ]);
        ip(&[
            "link",
            "add",
            "ebt-b",
            "type",
            "veth",
            "peer",
            "name",
            "ebt-b-peer",
        ]);
        ip(&["link", "add", "ebt-br0", "type", "bridge"]);
        Self {
            veth_a: ifindex("ebt-a"),
            peer_a: ifindex("ebt-a-peer"),
            veth_b: ifindex("ebt-b"),
            peer_b: ifindex("ebt-b-peer"),
            bridge: ifindex("ebt-br0"),
        }
    }
}

/// Runs `ip` in the calling thread's namespace (a child inherits it).
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("cannot run `ip` (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// ifindex of `name` in the calling thread's namespace.
pub fn ifindex(name: &str) -> u32 {
    let c = CString::new(name).expect("interface name");
    // SAFETY: valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    assert_ne!(idx, 0, "no interface {name} in the test namespace");
    idx
}

/// `CLOCK_MONOTONIC`, the clock of `bpf_ktime_get_ns()`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    ts.tv_sec as u64 * NS_PER_SEC + ts.tv_nsec as u64
}

// ---- the loaded program and its maps ------------------------------------

/// One program run.
#[derive(Debug)]
pub struct Run {
    /// The program's return value (TC verdict).
    pub ret: u32,
    /// The frame as the program left it.
    pub out: Vec<u8>,
    /// `struct __sk_buff` as the kernel wrote it back (`ctx_out`).
    pub ctx: SkBuff,
    /// `CLOCK_MONOTONIC` just before and just after the syscall.
    pub started_ns: u64,
    pub finished_ns: u64,
}

/// Size of the `nat` map in tests (`ebridge up --nat-entries`).
pub const NAT_TEST_ENTRIES: u32 = 1024;

/// The datapath object with private (unpinned) maps and the endpoint
/// program loaded (verified) but not attached.
pub struct Datapath {
    ebpf: Ebpf,
}

impl Datapath {
    pub fn load() -> Self {
        Self::load_with_nat_entries(NAT_TEST_ENTRIES)
    }

    /// Like `ebridge up --nat-entries <nat_entries>`.
    pub fn load_with_nat_entries(nat_entries: u32) -> Self {
        let ebpf = EbpfLoader::new()
            .map_max_entries(MAP_NAT, nat_entries)
            .load(DATAPATH_OBJECT)
            .expect("cannot load the datapath object");
        let mut dp = Self { ebpf };
        dp.load_program(PROG_ENDPOINT);
        dp
    }

    /// Like [`Datapath::load_with_nat_entries`], with the IPv6 `nat6` map
    /// the same size (its default preallocates tens of MB per test).
    pub fn load_with_nat6_entries(nat_entries: u32) -> Self {
        let ebpf = EbpfLoader::new()
            .map_max_entries(MAP_NAT, nat_entries)
            .map_max_entries(ebridge_common::maps::MAP_NAT6, nat_entries)
            .load(DATAPATH_OBJECT)
            .expect("cannot load the datapath object");
        let mut dp = Self { ebpf };
        dp.load_program(PROG_ENDPOINT);
        dp
    }

    /// Loads (verifies) one more program of the object, e.g.
    /// `PROG_UPLINK_INGRESS`, so [`Datapath::run_prog`] can run it.
    pub fn load_program(&mut self, name: &str) {
        let prog: &mut SchedClassifier = self
            .ebpf
            .program_mut(name)
            .unwrap_or_else(|| panic!("object has no {name} program"))
            .try_into()
            .unwrap_or_else(|e| panic!("{name} is not a classifier: {e:?}"));
        prog.load()
            .unwrap_or_else(|e| panic!("the verifier rejected {name}: {e:?}"));
    }

    /// The loaded object itself, for program types this harness does not
    /// wrap (the uplink's XDP program, `prog_uplink_xdp.rs`).
    pub fn ebpf(&self) -> &Ebpf {
        &self.ebpf
    }

    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    fn prog(&self, name: &str) -> &SchedClassifier {
        self.ebpf
            .program(name)
            .unwrap_or_else(|| panic!("object has no {name} program"))
            .try_into()
            .expect("classifier")
    }

    pub fn set_config(&mut self, cfg: &BridgeConfig) {
        let mut map: Array<_, BridgeConfig> = self
            .ebpf
            .map_mut(MAP_CONFIG)
            .expect("config map")
            .try_into()
            .expect("config is an Array<BridgeConfig>");
        map.set(0, cfg, 0).expect("write config[0]");
    }

    pub fn config(&self) -> BridgeConfig {
        let map: Array<_, BridgeConfig> = self
            .ebpf
            .map(MAP_CONFIG)
            .expect("config map")
            .try_into()
            .expect("config is an Array<BridgeConfig>");
        map.get(&0, 0).expect("read config[0]")
    }

    /// Gives the endpoint on `ifindex` its IPv6 addresses.
    pub fn set_endpoint_ipv6(&mut self, ifindex: u32, ipv6: [u8; 16], ipv6_ll: [u8; 16]) {
        let mut eps: HashMap<_, u32, Endpoint> = self
            .ebpf
            .map_mut(MAP_ENDPOINTS)
            .expect("endpoints map")
            .try_into()
            .expect("endpoints is a HashMap<u32, Endpoint>");
        let mut ep = eps.get(&ifindex, 0).expect("endpoint to give IPv6");
        ep.ipv6 = ipv6;
        ep.ipv6_ll = ipv6_ll;
        eps.insert(ifindex, ep, 0).expect("update endpoint");
    }

    /// Registers an endpoint on host veth `ifindex` in both endpoint maps.
    pub fn add_endpoint(&mut self, ifindex: u32, mac: [u8; 6], ipv4: [u8; 4]) -> Endpoint {
        let ep = Endpoint {
            ipv4,
            mac,
            host_ifindex: ifindex,
            ..Endpoint::default()
        };
        let mut eps: HashMap<_, u32, Endpoint> = self
            .ebpf
            .map_mut(MAP_ENDPOINTS)
            .expect("endpoints map")
            .try_into()
            .expect("endpoints is a HashMap<u32, Endpoint>");
        eps.insert(ifindex, ep, 0).expect("insert endpoint");
        let mut by_ip: HashMap<_, [u8; 4], u32> = self
            .ebpf
            .map_mut(MAP_ENDPOINT_BY_IP)
            .expect("endpoint_by_ip map")
            .try_into()
            .expect("endpoint_by_ip is a HashMap<[u8; 4], u32>");
        by_ip
            .insert(ipv4, ifindex, 0)
            .expect("insert endpoint_by_ip");
        ep
    }

    fn fdb_mut(&mut self) -> HashMap<&mut aya::maps::MapData, MacAddr, FdbEntry> {
        self.ebpf
            .map_mut(MAP_FDB)
            .expect("fdb map")
            .try_into()
            .expect("fdb is a HashMap<MacAddr, FdbEntry>")
    }

    pub fn fdb_insert(&mut self, mac: [u8; 6], entry: FdbEntry) {
        self.fdb_mut()
            .insert(MacAddr { octets: mac }, entry, 0)
            .expect("insert fdb entry");
    }

    pub fn fdb_remove(&mut self, mac: [u8; 6]) {
        self.fdb_mut()
            .remove(&MacAddr { octets: mac })
            .expect("remove fdb entry");
    }

    pub fn fdb_get(&self, mac: [u8; 6]) -> Option<FdbEntry> {
        let fdb: HashMap<_, MacAddr, FdbEntry> = self
            .ebpf
            .map(MAP_FDB)
            .expect("fdb map")
            .try_into()
            .expect("fdb is a HashMap<MacAddr, FdbEntry>");
        found(fdb.get(&MacAddr { octets: mac }, 0), "read fdb entry")
    }

    pub fn fdb_len(&self) -> usize {
        let fdb: HashMap<_, MacAddr, FdbEntry> = self
            .ebpf
            .map(MAP_FDB)
            .expect("fdb map")
            .try_into()
            .expect("fdb is a HashMap<MacAddr, FdbEntry>");
        fdb.keys()
            .collect::<Result<Vec<_>, _>>()
            .expect("read fdb keys")
            .len()
    }

    fn nat_map(&self) -> HashMap<&aya::maps::MapData, NatKey, NatEntry> {
        self.ebpf
            .map(MAP_NAT)
            .expect("nat map")
            .try_into()
            .expect("nat is a HashMap<NatKey, NatEntry>")
    }

    pub fn nat_get(&self, key: &NatKey) -> Option<NatEntry> {
        found(self.nat_map().get(key, 0), "read nat entry")
    }

    /// Every conntrack entry (two per flow).
    pub fn nat_entries(&self) -> Vec<(NatKey, NatEntry)> {
        self.nat_map()
            .iter()
            .map(|kv| kv.expect("read nat entry"))
            .collect()
    }

    pub fn frags_entries(&self) -> Vec<(FragKey, FragEntry)> {
        let frags: HashMap<_, FragKey, FragEntry> = self
            .ebpf
            .map(MAP_FRAGS)
            .expect("frags map")
            .try_into()
            .expect("frags is a HashMap<FragKey, FragEntry>");
        frags
            .iter()
            .map(|kv| kv.expect("read frags entry"))
            .collect()
    }

    /// Every reason's counter, summed over CPUs; index = reason code.
    pub fn stats(&self) -> Vec<Counter> {
        let stats: PerCpuArray<_, Counter> = self
            .ebpf
            .map(MAP_STATS)
            .expect("stats map")
            .try_into()
            .expect("stats is a PerCpuArray<Counter>");
        (0..MAX_REASONS as u32)
            .map(|reason| {
                let per_cpu = stats.get(&reason, 0).expect("read stats");
                per_cpu.iter().fold(Counter::default(), |acc, c| Counter {
                    packets: acc.packets + c.packets,
                    bytes: acc.bytes + c.bytes,
                })
            })
            .collect()
    }

    /// Runs the endpoint program once on `frame` with the given context
    /// (or none).
    pub fn try_run(&self, ctx: Option<&SkBuff>, frame: &[u8]) -> Result<Run, ProgramError> {
        self.try_run_prog(PROG_ENDPOINT, ctx, frame)
    }

    /// Runs program `name` (loaded) once on `frame`.
    pub fn try_run_prog(
        &self,
        name: &str,
        ctx: Option<&SkBuff>,
        frame: &[u8],
    ) -> Result<Run, ProgramError> {
        let mut out = vec![0u8; frame.len() + 256];
        let mut ctx_out = SkBuff::default();
        let started_ns = monotonic_ns();
        let res = self.prog(name).test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: ctx.map(bytemuck::bytes_of),
            ctx_out: Some(bytemuck::bytes_of_mut(&mut ctx_out)),
            ..Default::default()
        })?;
        let finished_ns = monotonic_ns();
        out.truncate(res.data_size_out as usize);
        Ok(Run {
            ret: res.return_value,
            out,
            ctx: ctx_out,
            started_ns,
            finished_ns,
        })
    }

    /// Runs the endpoint program on `frame` as if it arrived on host veth
    /// `ifindex`.
    pub fn run(&self, ifindex: u32, frame: &[u8]) -> Run {
        self.run_prog(PROG_ENDPOINT, ifindex, frame)
    }

    /// Runs program `name` (loaded) on `frame` as if it passed device
    /// `ifindex`.
    pub fn run_prog(&self, name: &str, ifindex: u32, frame: &[u8]) -> Run {
        let run = self
            .try_run_prog(name, Some(&SkBuff::on(ifindex)), frame)
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN of {name} on ifindex {ifindex}: {e:?}"));
        assert_eq!(
            run.ctx.ifindex, ifindex,
            "the kernel ran the program on another device than asked"
        );
        run
    }

    /// The non-zero counters, for failure messages.
    pub fn stats_summary(&self) -> String {
        describe(&self.stats())
    }

    /// Asserts that exactly the listed `(reason, packets, bytes)` counters
    /// are non-zero, with those values.
    pub fn assert_counters(&self, expected: &[(u32, u64, u64)]) {
        let stats = self.stats();
        for (reason, c) in stats.iter().enumerate() {
            let reason = reason as u32;
            let want = expected
                .iter()
                .find(|(r, _, _)| *r == reason)
                .map(|&(_, packets, bytes)| Counter { packets, bytes })
                .unwrap_or_default();
            assert_eq!(
                *c,
                want,
                "counter {reason} ({}): got {c:?}, want {want:?}; all non-zero: {}",
                reason_label(reason).unwrap_or("?"),
                describe(&stats)
            );
        }
    }

    /// Exactly one packet of `frame`'s size was counted, on `reason`.
    pub fn assert_counted_once(&self, reason: u32, frame: &[u8]) {
        self.assert_counters(&[(reason, 1, frame.len() as u64)]);
    }

    /// `mac` is in the FDB on `ifindex`, learned (not local), with a
    /// timestamp taken during `run`.
    pub fn assert_learned(&self, mac: [u8; 6], ifindex: u32, run: &Run) {
        let entry = self
            .fdb_get(mac)
            .unwrap_or_else(|| panic!("{} was not learned", fmt_mac(mac)));
        assert_eq!(
            entry.ifindex,
            ifindex,
            "{} learned on the wrong port",
            fmt_mac(mac)
        );
        assert_eq!(entry.flags, 0, "a learned entry must not be local");
        assert!(
            (run.started_ns..=run.finished_ns).contains(&entry.last_seen_ns),
            "last_seen_ns {} of {} is not the time of the run [{}, {}]",
            entry.last_seen_ns,
            fmt_mac(mac),
            run.started_ns,
            run.finished_ns
        );
    }
}

fn describe(stats: &[Counter]) -> String {
    let parts: Vec<String> = stats
        .iter()
        .enumerate()
        .filter(|(_, c)| **c != Counter::default())
        .map(|(r, c)| {
            format!(
                "{} ({r}) = {}p/{}B",
                reason_label(r as u32).unwrap_or("?"),
                c.packets,
                c.bytes
            )
        })
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

pub fn fmt_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn verdict_name(ret: u32) -> &'static str {
    match ret {
        TC_NEXT => "TC_NEXT",
        TC_ACT_SHOT => "TC_ACT_SHOT",
        TC_ACT_REDIRECT => "TC_ACT_REDIRECT",
        _ => "unexpected verdict",
    }
}

impl Run {
    pub fn assert_verdict(&self, expected: u32) {
        assert_eq!(
            self.ret,
            expected,
            "verdict {} ({}), want {} ({})",
            self.ret,
            verdict_name(self.ret),
            expected,
            verdict_name(expected)
        );
    }

    /// Frames that are not translated leave the program as they came.
    pub fn assert_frame_unchanged(&self, frame: &[u8]) {
        assert_eq!(self.out.len(), frame.len(), "output frame length");
        assert!(
            self.out == frame,
            "the program modified the frame:\n in:  {frame:02x?}\n out: {:02x?}",
            self.out
        );
    }
}

// ---- the usual starting state -------------------------------------------

/// An entry the program would have learned on `ifindex` at `last_seen_ns`.
pub fn learned_entry(ifindex: u32, last_seen_ns: u64) -> FdbEntry {
    FdbEntry {
        ifindex,
        flags: 0,
        last_seen_ns,
    }
}

/// A node-owned MAC (bridge or host veth), as `ebridge up` writes it.
pub fn local_entry(ifindex: u32) -> FdbEntry {
    FdbEntry {
        ifindex,
        flags: FDB_F_LOCAL,
        last_seen_ns: 0,
    }
}

/// [`default_config`] with the IPv6 subnet fd00::/64 (gateway fd00::1).
pub fn ipv6_config(net: &TestNet) -> BridgeConfig {
    let base = default_config(net);
    BridgeConfig {
        flags: base.flags | ebridge_common::config::CONFIG_F_IPV6,
        subnet_ipv6: [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        subnet6_prefix_len: 64,
        gateway_ipv6: GATEWAY_IP6,
        // As `up` writes it: ICC off lets link-local unicast reach the
        // bridge's own (EUI-64 of this MAC) and no other.
        bridge_mac: BRIDGE_MAC,
        ..base
    }
}

pub fn default_config(net: &TestNet) -> BridgeConfig {
    // No masquerade and no uplink: NAT settings stay zero
    // (`common::nat::nat_config` adds them), as does the netns inode.
    BridgeConfig {
        gateway_ipv4: GATEWAY_IP,
        subnet_ipv4: [172, 17, 0, 0],
        subnet_prefix_len: 16,
        bridge_ifindex: net.bridge,
        mtu: 1500,
        flags: CONFIG_F_ICC,
        fdb_ageing_ns: AGEING_NS,
        ..BridgeConfig::default()
    }
}

/// Two endpoints on one bridge, as `ebridge up` + two `endpoint add` and a
/// frame from B would leave the maps.
pub struct Fixture {
    pub net: TestNet,
    pub dp: Datapath,
    /// Host veth of endpoint A (MAC_A, IP_A): the sender in most tests.
    pub a: u32,
    /// Host veth of endpoint B (MAC_B, IP_B).
    pub b: u32,
    /// B's FDB entry as the fixture wrote it (learned just now).
    pub b_entry: FdbEntry,
    /// The bridge's local FDB entry.
    pub bridge_entry: FdbEntry,
}

impl Fixture {
    pub fn new(net: &TestNet) -> Self {
        Self::with_config(net, &default_config(net))
    }

    /// The fixture on an IPv6 bridge: A and B also have IP6_A / IP6_B and
    /// their link-local addresses, as `endpoint add` records them.
    pub fn with_ipv6(net: &TestNet, cfg: &BridgeConfig) -> Self {
        let mut fx = Self::with_config(net, cfg);
        fx.dp
            .set_endpoint_ipv6(fx.a, IP6_A, super::frame6::link_local(MAC_A));
        fx.dp
            .set_endpoint_ipv6(fx.b, IP6_B, super::frame6::link_local(MAC_B));
        fx
    }

    pub fn with_config(net: &TestNet, cfg: &BridgeConfig) -> Self {
        Self::with_datapath(net, Datapath::load(), cfg)
    }

    /// The fixture's maps, in a datapath the caller loaded.
    pub fn with_datapath(net: &TestNet, mut dp: Datapath, cfg: &BridgeConfig) -> Self {
        dp.set_config(cfg);
        dp.add_endpoint(net.veth_a, MAC_A, IP_A);
        dp.add_endpoint(net.veth_b, MAC_B, IP_B);
        let bridge_entry = local_entry(net.bridge);
        dp.fdb_insert(BRIDGE_MAC, bridge_entry);
        let b_entry = learned_entry(net.veth_b, monotonic_ns());
        dp.fdb_insert(MAC_B, b_entry);
        Self {
            net: *net,
            dp,
            a: net.veth_a,
            b: net.veth_b,
            b_entry,
            bridge_entry,
        }
    }

    /// A fresh `last_seen_ns` that is `age` old.
    pub fn aged(age: Duration) -> u64 {
        monotonic_ns()
            .checked_sub(age.as_nanos() as u64)
            .expect("the machine has been up for less than the wanted age")
    }

    /// The fixture's FDB entries are the only ones besides `extra`.
    pub fn assert_fdb_holds_only(&self, extra: &[[u8; 6]]) {
        assert_eq!(
            self.dp.fdb_get(BRIDGE_MAC),
            Some(self.bridge_entry),
            "the bridge's local entry changed"
        );
        assert_eq!(
            self.dp.fdb_get(MAC_B),
            Some(self.b_entry),
            "B's entry changed"
        );
        for mac in extra {
            assert!(
                self.dp.fdb_get(*mac).is_some(),
                "{} missing from the fdb",
                fmt_mac(*mac)
            );
        }
        assert_eq!(self.dp.fdb_len(), 2 + extra.len(), "unexpected fdb entries");
    }
}

/// A map lookup's value, or None for a key the map does not hold. Any other
/// error fails the test: read as "absent" it would pass the checks that
/// something was removed or never made.
fn found<V>(lookup: Result<V, MapError>, what: &str) -> Option<V> {
    match lookup {
        Ok(value) => Some(value),
        Err(MapError::KeyNotFound) => None,
        Err(e) => panic!("{what}: {e:?}"),
    }
}

/// The errno of a failed `BPF_PROG_TEST_RUN`.
pub fn errno(e: &ProgramError) -> Option<i32> {
    match e {
        ProgramError::SyscallError(sys) => sys.io_error.raw_os_error(),
        _ => None,
    }
}
