pub(crate) mod agent;
pub(crate) mod completions;
pub(crate) mod down;
pub(crate) mod endpoint;
pub(crate) mod monitor;
pub(crate) mod publish;
pub(crate) mod show;
pub(crate) mod status;
pub(crate) mod up;

use anyhow::Result;

use crate::{
    cli::{Cli, CniCommand, Command, EndpointCommand, PublishCommand},
    error::{require_root, usage},
    maps::{self, DatapathMaps},
    netlink::Netlink,
    netns, settings,
};

pub async fn run(cli: Cli) -> Result<()> {
    // Text about the CLI itself: packagers generate it without root.
    if !matches!(
        cli.command,
        Command::Completions { .. } | Command::Man { .. }
    ) {
        require_root()?;
    }
    match cli.command {
        Command::Up(args) => up::run(args).await,
        Command::Down { bridge } => down::run(&bridge.bridge).await,
        Command::Endpoint { command, bridge } => match command {
            EndpointCommand::Add(args) => endpoint::add(&bridge.bridge, args).await,
            EndpointCommand::Rm { name } => endpoint::rm(&bridge.bridge, &name).await,
            EndpointCommand::Ls { json } => endpoint::ls(&bridge.bridge, json).await,
        },
        Command::Show { what, bridge } => show::run(&bridge.bridge, what).await,
        Command::Agent(args) => agent::run(args).await,
        Command::Status { bridge, json } => status::run(&bridge.bridge, json).await,
        Command::Monitor(args) => monitor::run(args).await,
        Command::Cni { command } => match command {
            CniCommand::Install(args) => crate::cni::install::run(&args),
        },
        Command::Publish { command, bridge } => match command {
            PublishCommand::Add { name, spec } => publish::add(&bridge.bridge, &name, &spec).await,
            PublishCommand::Rm { name, spec } => publish::rm(&bridge.bridge, &name, &spec).await,
            PublishCommand::Ls { json } => publish::ls(&bridge.bridge, json).await,
        },
        Command::Completions { shell } => completions::print(shell),
        Command::Man { dir } => completions::man(&dir),
    }
}

/// Opens the maps of a bridge that is up in this network namespace, or says
/// why it cannot.
async fn open_live_bridge(bridge: &str) -> Result<(DatapathMaps, Netlink)> {
    settings::interface_name("bridge", bridge)?;
    if !maps::is_pinned(bridge) {
        return Err(usage(format!(
            "bridge {bridge} is not up; run 'ebridge up --bridge {bridge}' first"
        )));
    }
    let maps = DatapathMaps::open(bridge)?;
    let cfg = maps.read_config()?;
    if cfg.netns_inode != netns::current_inode()? {
        return Err(usage(format!(
            "bridge {bridge} belongs to another network namespace; run ebridge there or pick another --bridge name"
        )));
    }
    Ok((maps, Netlink::connect()?))
}
