use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::settings::DEFAULT_BRIDGE;

/// Docker's default bridge network as an eBPF datapath.
#[derive(Parser, Debug)]
#[command(name = "ebridge", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct BridgeArg {
    /// Bridge device name (also names the pin directory).
    #[arg(long, default_value = DEFAULT_BRIDGE, global = true)]
    pub bridge: String,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create the bridge and bring the eBPF datapath up.
    Up(UpArgs),
    /// Remove everything `up` and `endpoint add` made, and nothing else.
    Down {
        #[command(flatten)]
        bridge: BridgeArg,
    },
    /// Attach containers (network namespaces) to the bridge.
    Endpoint {
        #[command(subcommand)]
        command: EndpointCommand,
        #[command(flatten)]
        bridge: BridgeArg,
    },
    /// Published ports of endpoints.
    Publish {
        #[command(subcommand)]
        command: PublishCommand,
        #[command(flatten)]
        bridge: BridgeArg,
    },
    /// Run in the foreground: expire NAT flows, age the FDB, forward the
    /// datapath's log lines. Safe to kill and restart at any time.
    Agent(AgentArgs),
    /// Inspect the datapath's state.
    Show {
        #[command(subcommand)]
        what: ShowCommand,
        #[command(flatten)]
        bridge: BridgeArg,
    },
}

#[derive(Args, Debug)]
pub struct UpArgs {
    #[command(flatten)]
    pub bridge: BridgeArg,
    /// Container subnet [default: 172.17.0.0/16].
    #[arg(long)]
    pub subnet: Option<String>,
    /// Gateway address on the bridge [default: first host address of the subnet].
    #[arg(long)]
    pub gateway: Option<String>,
    /// Interface towards the outside [default: the default route's interface].
    #[arg(long)]
    pub uplink: Option<String>,
    /// MTU of the bridge and every veth [default: 1500].
    #[arg(long)]
    pub mtu: Option<u32>,
    /// Seconds after which an unrefreshed FDB entry is no longer used [default: 300].
    #[arg(long = "fdb-ageing", value_name = "SECONDS")]
    pub fdb_ageing: Option<u64>,
    /// Forbid container-to-container traffic (Docker's icc=false).
    #[arg(long = "no-icc")]
    pub no_icc: bool,
    /// Do not masquerade: route the container subnet as is (the network
    /// behind the uplink must route it back).
    #[arg(long = "no-masquerade")]
    pub no_masquerade: bool,
    /// Source ports masqueraded flows get [default: 32768-60999].
    #[arg(long = "nat-ports", value_name = "MIN-MAX")]
    pub nat_ports: Option<String>,
    /// NAT table size in entries; every flow takes two [default: 262144].
    #[arg(long = "nat-entries", value_name = "N")]
    pub nat_entries: Option<u32>,
    /// Also un-NAT replies in XDP on the uplink, before the kernel makes an
    /// skb: generic (skb) mode works on any device, native needs driver
    /// support [default: off].
    #[arg(long, value_enum, value_name = "MODE")]
    pub xdp: Option<XdpMode>,
}

/// How `uplink_xdp` is attached to the uplink, if at all.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum XdpMode {
    /// No XDP: the TC program does the whole reverse path.
    #[default]
    Off,
    /// XDP_FLAGS_SKB_MODE: after the skb is made, before TC.
    Generic,
    /// XDP_FLAGS_DRV_MODE: in the driver, before any skb.
    Native,
}

#[derive(Subcommand, Debug)]
pub enum EndpointCommand {
    /// Create a veth pair into a netns and attach it to the bridge.
    Add(EndpointAddArgs),
    /// Detach an endpoint and remove what `add` made for it.
    Rm { name: String },
    /// List endpoints.
    Ls {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct EndpointAddArgs {
    pub name: String,
    /// Existing netns to use [default: create /run/netns/NAME].
    #[arg(long)]
    pub netns: Option<String>,
    /// Address in the subnet [default: next free].
    #[arg(long)]
    pub ip: Option<String>,
    /// MAC of the container interface [default: 02:42 + the address].
    #[arg(long)]
    pub mac: Option<String>,
    /// Interface name inside the netns.
    #[arg(long, default_value = "eth0")]
    pub ifname: String,
    /// Publish a port: [HOSTIP:]HOSTPORT[-END]:CTRPORT[-END][/tcp|/udp] (repeatable).
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    pub publish: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum PublishCommand {
    /// Publish a port of an endpoint, like `docker run -p`.
    Add { name: String, spec: String },
    /// Stop publishing it.
    Rm { name: String, spec: String },
    /// List published ports.
    Ls {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct AgentArgs {
    #[command(flatten)]
    pub bridge: BridgeArg,
    /// Seconds between garbage-collection passes over the NAT table.
    #[arg(long = "gc-interval", default_value_t = 5, value_name = "SECONDS")]
    pub gc_interval: u64,
    /// Stop after this many seconds (tests, demos); runs until killed otherwise.
    #[arg(long = "run-for", value_name = "SECONDS")]
    pub run_for: Option<u64>,
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub tcp_timeout_syn_sent: u64,
    #[arg(long, default_value_t = 432000, value_name = "SECONDS")]
    pub tcp_timeout_established: u64,
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub tcp_timeout_fin_wait: u64,
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub tcp_timeout_time_wait: u64,
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub tcp_timeout_close: u64,
    /// Unreplied UDP flows.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub udp_timeout: u64,
    /// UDP flows that have seen a reply.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub udp_timeout_stream: u64,
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub icmp_timeout: u64,
}

#[derive(Subcommand, Debug)]
pub enum ShowCommand {
    /// MAC table, like `brctl showmacs`.
    Fdb {
        #[arg(long)]
        json: bool,
    },
    /// Packet and byte counters by reason, like `iptables -nvL`.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Masqueraded flows, like `conntrack -L`.
    Nat {
        #[arg(long)]
        json: bool,
    },
    /// Datapath settings.
    Config {
        #[arg(long)]
        json: bool,
    },
}
