//! Loading the eBPF object, pinning its maps and programs, and attaching
//! programs with pinned TCX links.
use anyhow::{Context as _, Result};
use aya::{
    programs::{links::FdLink, CgroupAttachMode, CgroupSockAddr, SchedClassifier, TcAttachType},
    EbpfLoader,
};
use ebridge_common::{config::BridgeConfig, maps::*};

use crate::{maps::DatapathMaps, pins};

/// The compiled eBPF object (embedded at build time; tests load it too).
pub static DATAPATH_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ebridge-datapath"));

/// `nat6` on a bridge without an IPv6 subnet: nothing uses it.
const MIN_NAT6_ENTRIES: u32 = 16;

/// Creates and pins every map and program of the bridge's datapath, writes
/// its config and attaches the uplink programs. Existing pins are reused by
/// aya, so the caller makes sure the directory is fresh.
pub fn load_and_pin(
    bridge: &str,
    config: &BridgeConfig,
    nat_entries: u32,
    uplink: &str,
) -> Result<()> {
    let dir = pins::bridge_dir(bridge);
    std::fs::create_dir_all(pins::links_dir(bridge))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let paths: Vec<(&str, std::path::PathBuf)> = PINNED_MAPS
        .iter()
        .map(|m| (*m, pins::map_path(bridge, m)))
        .collect();
    let mut loader = EbpfLoader::new();
    for (name, path) in &paths {
        loader.map_pin_path(name, path.as_path());
    }
    loader.map_max_entries(MAP_NAT, nat_entries);
    // Hash maps are preallocated: a bridge without IPv6 keeps its IPv6
    // table at the minimum instead of another table's worth of memory.
    let nat6_entries = if config.flags & ebridge_common::config::CONFIG_F_IPV6 != 0 {
        nat_entries
    } else {
        MIN_NAT6_ENTRIES
    };
    loader.map_max_entries(MAP_NAT6, nat6_entries);
    if nat6_entries == MIN_NAT6_ENTRIES {
        loader.map_max_entries(MAP_FRAGS6, MIN_NAT6_ENTRIES);
    }
    let mut ebpf = loader
        .load(DATAPATH_OBJECT)
        .context("cannot load the eBPF object")?;

    // The config goes in before any program is attached anywhere.
    let mut maps = DatapathMaps::open(bridge)?;
    maps.config
        .set(0, config, 0)
        .context("cannot write the config map")?;

    for name in [PROG_ENDPOINT, PROG_UPLINK_INGRESS, PROG_UPLINK_EGRESS] {
        let prog: &mut SchedClassifier = ebpf
            .program_mut(name)
            .with_context(|| format!("eBPF object has no program {name}"))?
            .try_into()?;
        prog.load()
            .with_context(|| format!("the kernel rejected program {name}"))?;
        prog.pin(pins::prog_path(bridge, name))
            .with_context(|| format!("cannot pin program {name}"))?;
    }
    attach(
        bridge,
        PROG_UPLINK_INGRESS,
        uplink,
        TcAttachType::Ingress,
        "uplink-ingress",
    )?;
    attach(
        bridge,
        PROG_UPLINK_EGRESS,
        uplink,
        TcAttachType::Egress,
        "uplink-egress",
    )?;
    // XDP last: whatever it passes meets the TC program already attached.
    crate::xdp::attach_uplink(&mut ebpf, bridge, uplink, crate::xdp::mode_of(config.flags))?;

    // Host access to published ports: on the cgroup v2 root, so every
    // process is covered; the programs themselves ignore sockets of other
    // network namespaces.
    let cgroup_root = cgroup2_root()?;
    let cgroup = std::fs::File::open(&cgroup_root)
        .with_context(|| format!("cannot open cgroup {}", cgroup_root.display()))?;
    for name in HOST_PROGS {
        let prog: &mut CgroupSockAddr = ebpf
            .program_mut(name)
            .with_context(|| format!("eBPF object has no program {name}"))?
            .try_into()?;
        prog.load()
            .with_context(|| format!("the kernel rejected program {name}"))?;
        let id = prog
            // Links are always multi-attach on cgroups; the flag itself is refused.
            .attach(&cgroup, CgroupAttachMode::Single)
            .with_context(|| format!("cannot attach {name} to {}", cgroup_root.display()))?;
        let link: FdLink = prog.take_link(id)?.try_into()?;
        link.pin(pins::link_path(bridge, &format!("cgroup-{name}")))
            .with_context(|| format!("cannot pin the link of {name}"))?;
    }
    Ok(())
}

/// Where cgroup v2 is mounted (/sys/fs/cgroup on unified hosts,
/// /sys/fs/cgroup/unified on hybrid ones).
fn cgroup2_root() -> Result<std::path::PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .context("cannot read /proc/self/mountinfo")?;
    mounts
        .lines()
        .find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            if !right.starts_with("cgroup2 ") {
                return None;
            }
            left.split_whitespace().nth(4).map(std::path::PathBuf::from)
        })
        .context("no cgroup v2 hierarchy is mounted; host access to published ports needs one")
}

/// Attaches a pinned program to `ifname` as a TCX link pinned under
/// `links/<link_name>`, so it outlives this process.
fn attach(
    bridge: &str,
    prog: &str,
    ifname: &str,
    direction: TcAttachType,
    link_name: &str,
) -> Result<()> {
    let mut prog = SchedClassifier::from_pin(pins::prog_path(bridge, prog))
        .with_context(|| format!("cannot open the pinned program {prog}; is the bridge up?"))?;
    let id = prog
        .attach(ifname, direction)
        .with_context(|| format!("cannot attach to {ifname}"))?;
    let link: FdLink = prog.take_link(id)?.try_into()?;
    link.pin(pins::link_path(bridge, link_name))
        .with_context(|| format!("cannot pin the link of {link_name}"))?;
    Ok(())
}

/// Attaches the endpoint program to TC ingress of a host veth.
pub fn attach_endpoint(bridge: &str, ifname: &str) -> Result<()> {
    attach(bridge, PROG_ENDPOINT, ifname, TcAttachType::Ingress, ifname)
}

pub fn detach_endpoint(bridge: &str, ifname: &str) -> Result<()> {
    let path = pins::link_path(bridge, ifname);
    if path.exists() {
        std::fs::remove_file(&path).with_context(|| format!("cannot unpin {}", path.display()))?;
    }
    Ok(())
}

/// Kernel id of a pinned program (to find its log ring buffer).
pub fn program_id(bridge: &str, prog: &str) -> Result<u32> {
    let prog = SchedClassifier::from_pin(pins::prog_path(bridge, prog))
        .with_context(|| format!("cannot open the pinned program {prog}"))?;
    Ok(prog.info()?.id())
}
