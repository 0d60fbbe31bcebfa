//! Loading the eBPF object, pinning its maps and programs, and attaching
//! the endpoint program to host veths with pinned TCX links.
use anyhow::{Context as _, Result};
use aya::{
    programs::{links::FdLink, SchedClassifier, TcAttachType},
    EbpfLoader,
};
use ebridge_common::{config::BridgeConfig, maps::*};

use crate::{maps::DatapathMaps, pins};

/// The compiled eBPF object (embedded at build time; tests load it too).
pub static DATAPATH_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ebridge-datapath"));

/// Creates and pins every map and program of the bridge's datapath and
/// writes its config. Existing pins are reused by aya, so the caller makes
/// sure the directory is fresh.
pub fn load_and_pin(bridge: &str, config: &BridgeConfig) -> Result<()> {
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
    let mut ebpf = loader
        .load(DATAPATH_OBJECT)
        .context("cannot load the eBPF object")?;
    let prog: &mut SchedClassifier = ebpf
        .program_mut(PROG_ENDPOINT)
        .context("eBPF object has no endpoint program")?
        .try_into()?;
    prog.load()
        .context("the kernel rejected the endpoint program")?;
    prog.pin(pins::prog_path(bridge, PROG_ENDPOINT))
        .context("cannot pin the endpoint program")?;

    let mut maps = DatapathMaps::open(bridge)?;
    maps.config
        .set(0, config, 0)
        .context("cannot write the config map")?;
    Ok(())
}

/// Attaches the pinned endpoint program to TC ingress of `ifname` and pins
/// the link, so it outlives this process.
pub fn attach_endpoint(bridge: &str, ifname: &str) -> Result<()> {
    let mut prog = SchedClassifier::from_pin(pins::prog_path(bridge, PROG_ENDPOINT))
        .context("cannot open the pinned endpoint program; is the bridge up?")?;
    let id = prog
        .attach(ifname, TcAttachType::Ingress)
        .with_context(|| format!("cannot attach the endpoint program to {ifname}"))?;
    let link: FdLink = prog.take_link(id)?.try_into()?;
    link.pin(pins::link_path(bridge, ifname))
        .with_context(|| format!("cannot pin the link of {ifname}"))?;
    Ok(())
}

pub fn detach_endpoint(bridge: &str, ifname: &str) -> Result<()> {
    let path = pins::link_path(bridge, ifname);
    if path.exists() {
        std::fs::remove_file(&path).with_context(|| format!("cannot unpin {}", path.display()))?;
    }
    Ok(())
}
