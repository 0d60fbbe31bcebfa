use anyhow::Result;
use netlink_packet_route::link::InfoKind;

use super::endpoint::remove_endpoint;
use crate::{
    error::usage,
    maps::{self, DatapathMaps},
    netlink::Netlink,
    netns, pins, settings, state,
};

pub async fn run(bridge: &str) -> Result<()> {
    settings::interface_name("bridge", bridge)?;
    let nl = Netlink::connect()?;
    if !maps::is_pinned(bridge) {
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
        remove_endpoint(bridge, record, &mut maps, &nl).await?;
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
