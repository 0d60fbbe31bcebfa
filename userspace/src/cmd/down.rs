use anyhow::Result;
use netlink_packet_route::link::InfoKind;

use super::endpoint::remove_endpoint;
use crate::{
    error::usage,
    maps::{self, DatapathMaps},
    netlink::{Link, Netlink, BRIDGE_ALIAS},
    netns, pins, settings, state,
};

pub async fn run(bridge: &str) -> Result<()> {
    settings::interface_name("bridge", bridge)?;
    let nl = Netlink::connect()?;
    if !maps::is_pinned(bridge) {
        if let Some(link) = stale_bridge(&nl, bridge).await? {
            return remove_stale(&nl, bridge, &link).await;
        }
        if state::state_dir(bridge).exists() {
            state::remove(bridge)?;
        }
        println!("bridge {bridge} is not up; nothing to remove");
        return Ok(());
    }
    let mut maps = DatapathMaps::open(bridge)?;
    let cfg = maps.read_config()?;
    if cfg.netns_inode != netns::current_inode()? {
        return Err(usage(format!(
            "bridge {bridge} belongs to another network namespace; run 'ebridge down' there"
        )));
    }
    let lock = state::lock(bridge)?;
    let st = state::load(bridge)?;
    for record in &st.endpoints {
        remove_endpoint(bridge, record, Some(&mut maps), &nl).await?;
    }
    for net in maps.native_cidrs()? {
        nl.del_unreachable_route(net).await?;
    }
    // Only the bridge ebridge made: same index, same name, a bridge.
    if let Some(link) = nl.link_by_index(cfg.bridge_ifindex).await? {
        if link.name == bridge && link.kind == Some(InfoKind::Bridge) {
            nl.delete_link(link.index).await?;
        }
    }
    drop(maps);
    pins::remove_bridge_dir(bridge)?;
    state::remove(bridge)?;
    drop(lock);
    println!(
        "bridge {bridge} down: {} endpoint(s) removed",
        st.endpoints.len()
    );
    Ok(())
}

/// A bridge `up` made (by its alias) whose pins are gone: they lived on a
/// bpffs that went away with a private mount namespace, or someone removed
/// them. Its programs are detached with them.
pub async fn stale_bridge(nl: &Netlink, bridge: &str) -> Result<Option<Link>> {
    Ok(nl
        .link_by_name(bridge)
        .await?
        .filter(|l| l.kind == Some(InfoKind::Bridge) && l.alias.as_deref() == Some(BRIDGE_ALIAS)))
}

/// `down` of a bridge whose datapath pins are gone: its endpoints' veths
/// and namespaces, the bridge and the state, as far as they remain.
async fn remove_stale(nl: &Netlink, bridge: &str, link: &Link) -> Result<()> {
    let lock = state::lock(bridge)?;
    let st = state::load(bridge)?;
    for record in &st.endpoints {
        remove_endpoint(bridge, record, None, nl).await?;
    }
    nl.delete_link(link.index).await?;
    pins::remove_bridge_dir(bridge)?;
    state::remove(bridge)?;
    drop(lock);
    println!(
        "bridge {bridge} down: its datapath pins were already gone; removed the bridge and {} endpoint(s)",
        st.endpoints.len()
    );
    Ok(())
}
