use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::settings::DEFAULT_BRIDGE;

/// How a published port is written, for every help text that takes one.
const SPEC_HELP: &str =
    "SPEC: [HOSTIP:]HOSTPORT[-END]:CTRPORT[-END][/tcp|/udp], as `docker run -p` takes it.
  8080:80                     TCP port 80 of the endpoint on port 8080 of every node address
  198.51.100.1:5353:53/udp    UDP port 53 on port 5353 of node address 198.51.100.1 only
  9000-9009:9000-9009         a range (both sides the same length)
The protocol defaults to tcp; HOSTIP 0.0.0.0 or none means every node address.";

/// Docker's default bridge network as an eBPF datapath.
#[derive(Parser, Debug)]
#[command(name = "ebridge", version, about)]
pub struct Cli {
    /// How log lines on stderr are written: text for people, json (one
    /// object per line: timestamp, level, target, message) for collectors.
    /// What is logged: RUST_LOG, else info and above for `agent`, warnings
    /// and errors for the other commands.
    #[arg(
        long,
        value_enum,
        default_value_t,
        global = true,
        value_name = "FORMAT"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `[timestamp LEVEL target] message`
    #[default]
    Text,
    /// `{"timestamp":…,"level":…,"target":…,"message":…}`
    Json,
}

/// The shells `ebridge completions` writes for.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
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
    /// Is the datapath healthy: kernel features, programs and links with
    /// their IDs, table fill, the agent; exit status 1 if anything is wrong.
    Status {
        #[command(flatten)]
        bridge: BridgeArg,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Watch the datapath: drops with their reason, new masqueraded flows,
    /// hits on published ports (from the datapath, while this runs) and
    /// expired flows (from the agent), one line each.
    Monitor(MonitorArgs),
    /// ebridge as a CNI plugin for container runtimes (podman, containerd,
    /// kubelet). The `ebridge` binary speaks CNI when CNI_COMMAND is set.
    Cni {
        #[command(subcommand)]
        command: CniCommand,
    },
    /// Print a shell completion script, e.g.
    /// `ebridge completions bash > /etc/bash_completion.d/ebridge`.
    Completions {
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Write man pages for ebridge and every subcommand (ebridge.1,
    /// ebridge-up.1, ebridge-endpoint-add.1, ...).
    Man {
        /// Directory to write them to, created if missing, e.g.
        /// /usr/local/share/man/man1.
        #[arg(long, default_value = ".", value_name = "DIR")]
        dir: std::path::PathBuf,
    },
}

/// What `ebridge monitor` shows.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MonitorKind {
    /// Packets dropped, with the reason (as in `show stats`).
    Drop,
    /// New masqueraded flows, with the address and port they were given.
    Nat,
    /// New flows through a published port (from outside or hairpin).
    Publish,
    /// Flows the agent expired (needs `ebridge agent` running).
    Expire,
}

#[derive(Args, Debug)]
pub struct MonitorArgs {
    #[command(flatten)]
    pub bridge: BridgeArg,
    /// Only these kinds of event (repeat or comma-separate); all by default.
    #[arg(long = "type", value_enum, value_delimiter = ',', value_name = "KIND")]
    pub kinds: Vec<MonitorKind>,
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
    /// Stop after this many events.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
}

#[derive(Subcommand, Debug)]
pub enum CniCommand {
    /// Put the plugin in the runtime's plugin directory and a network
    /// config (conflist) using it in its config directory.
    Install(CniInstallArgs),
}

#[derive(Args, Debug)]
pub struct CniInstallArgs {
    /// Where the runtime looks for CNI plugins.
    #[arg(long, default_value = "/opt/cni/bin", value_name = "DIR")]
    pub bin_dir: std::path::PathBuf,
    /// Where the runtime reads network configs.
    #[arg(long, default_value = "/etc/cni/net.d", value_name = "DIR")]
    pub conf_dir: std::path::PathBuf,
    /// The network's name (also names the conflist file).
    #[arg(long, default_value = "ebridge")]
    pub name: String,
    /// CNI spec version of the conflist.
    #[arg(long, default_value = "1.0.0", value_name = "VERSION")]
    pub cni_version: String,
    /// Delegate addresses to this IPAM plugin (e.g. host-local, with
    /// --subnet as its range) instead of ebridge's own allocator.
    #[arg(long, value_name = "PLUGIN")]
    pub ipam: Option<String>,
    /// A nameserver for the containers' DNS settings (repeatable).
    #[arg(long = "dns", value_name = "IP")]
    pub dns: Vec<String>,
    /// Datapath settings, as for `ebridge up`.
    #[command(flatten)]
    pub up: UpArgs,
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
    /// Source ports masqueraded flows get; every port is mapped into it
    /// [default: the container's own port if free, else any of 1024-65535,
    /// privileged ports staying below 1024].
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
    /// Route destinations in CIDR with the containers' own addresses (no
    /// masquerade), and let sources in it reach containers directly: the
    /// cluster's pod network (repeatable; Cilium's
    /// ipv4-native-routing-cidr).
    #[arg(long = "native-routing-cidr", value_name = "CIDR")]
    pub native_routing_cidr: Vec<String>,
    /// IPv6 subnet of the containers (Docker's --fixed-cidr-v6), e.g.
    /// fd00:dead:beef::/64; without it containers get no IPv6.
    #[arg(long = "subnet-v6", value_name = "CIDR")]
    pub subnet_v6: Option<String>,
    /// IPv6 gateway address on the bridge [default: the first address of
    /// --subnet-v6].
    #[arg(long = "gateway-v6", value_name = "IP")]
    pub gateway_v6: Option<String>,
    /// on: containers' IPv6 leaves masqueraded behind the uplink's global
    /// address (Docker 27's default); off: routed with their own addresses
    /// (Docker's routed mode; the network must route the subnet back)
    /// [default: on].
    #[arg(long = "ipv6-masquerade", value_enum, value_name = "MODE")]
    pub ipv6_masquerade: Option<OnOff>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnOff {
    On,
    Off,
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
    Rm {
        /// Name the endpoint was added with.
        name: String,
    },
    /// List endpoints.
    Ls {
        /// Print a JSON array of endpoint records instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
#[command(after_help = SPEC_HELP)]
pub struct EndpointAddArgs {
    /// Endpoint name: 1 to 64 letters, digits, '-', '_' or '.'; also names
    /// the netns made for it.
    pub name: String,
    /// Existing network namespace to put the endpoint in, e.g.
    /// /run/netns/NAME or /proc/PID/ns/net; not the node's own
    /// [default: create /run/netns/NAME].
    #[arg(long, value_name = "PATH")]
    pub netns: Option<String>,
    /// Address in the subnet [default: next free].
    #[arg(long)]
    pub ip: Option<String>,
    /// IPv6 address in the bridge's --subnet-v6 [default: next free, when
    /// the bridge has one].
    #[arg(long)]
    pub ip6: Option<String>,
    /// MAC of the container interface [default: 02:42 + the address].
    #[arg(long)]
    pub mac: Option<String>,
    /// Interface name inside the netns: 1 to 15 ASCII characters, not one
    /// the netns already has.
    #[arg(long, default_value = "eth0")]
    pub ifname: String,
    /// Publish a port, e.g. 8080:80 or 9000-9009:9000-9009/udp (repeatable;
    /// SPEC below).
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    pub publish: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum PublishCommand {
    /// Publish a port of an endpoint, like `docker run -p`.
    #[command(after_help = SPEC_HELP)]
    Add {
        /// Endpoint whose port to publish.
        name: String,
        /// What to publish, e.g. 8080:80 (SPEC below).
        spec: String,
    },
    /// Stop publishing it.
    #[command(after_help = SPEC_HELP)]
    Rm {
        /// Endpoint whose port is published.
        name: String,
        /// The SPEC it was published with (SPEC below).
        spec: String,
    },
    /// List published ports.
    Ls {
        /// Print a JSON array (endpoint, address, SPEC) instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct AgentArgs {
    #[command(flatten)]
    pub bridge: BridgeArg,
    /// Seconds between housekeeping passes (NAT expiry, FDB ageing, node
    /// addresses), 1 to 86400.
    #[arg(long = "gc-interval", default_value_t = 5, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=MAX_GC_INTERVAL))]
    pub gc_interval: u64,
    /// Stop after this many seconds (tests, demos); runs until killed otherwise.
    #[arg(long = "run-for", value_name = "SECONDS")]
    pub run_for: Option<u64>,
    /// Serve Prometheus metrics on http://ADDR/metrics (e.g. 127.0.0.1:9965).
    #[arg(long = "metrics-addr", value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Idle time after which a TCP flow that has only sent its SYN expires
    /// (nf_conntrack_tcp_timeout_syn_sent).
    #[arg(long, default_value_t = 120, value_name = "SECONDS", value_parser = timeout())]
    pub tcp_timeout_syn_sent: u64,
    /// Idle time after which an established TCP flow expires
    /// (nf_conntrack_tcp_timeout_established; 5 days).
    #[arg(long, default_value_t = 432000, value_name = "SECONDS", value_parser = timeout())]
    pub tcp_timeout_established: u64,
    /// Idle time after which a TCP flow that has seen a FIN expires
    /// (nf_conntrack_tcp_timeout_fin_wait).
    #[arg(long, default_value_t = 120, value_name = "SECONDS", value_parser = timeout())]
    pub tcp_timeout_fin_wait: u64,
    /// Idle time after which a TCP flow closed from both sides expires
    /// (nf_conntrack_tcp_timeout_time_wait).
    #[arg(long, default_value_t = 120, value_name = "SECONDS", value_parser = timeout())]
    pub tcp_timeout_time_wait: u64,
    /// Idle time after which a reset TCP flow expires
    /// (nf_conntrack_tcp_timeout_close).
    #[arg(long, default_value_t = 10, value_name = "SECONDS", value_parser = timeout())]
    pub tcp_timeout_close: u64,
    /// Idle time after which a UDP flow that never saw a reply expires
    /// (nf_conntrack_udp_timeout).
    #[arg(long, default_value_t = 30, value_name = "SECONDS", value_parser = timeout())]
    pub udp_timeout: u64,
    /// Idle time after which a UDP flow that has seen a reply expires
    /// (nf_conntrack_udp_timeout_stream).
    #[arg(long, default_value_t = 120, value_name = "SECONDS", value_parser = timeout())]
    pub udp_timeout_stream: u64,
    /// Idle time after which an ICMP echo flow expires
    /// (nf_conntrack_icmp_timeout).
    #[arg(long, default_value_t = 30, value_name = "SECONDS", value_parser = timeout())]
    pub icmp_timeout: u64,
}

/// A day: beyond that flows would outlive any sensible pass, and the agent
/// computes "one interval ago" from the current time.
pub const MAX_GC_INTERVAL: u64 = 86_400;
/// Timeouts are compared in nanoseconds in a u64; 0 would expire every flow
/// on the next pass.
pub const MAX_TIMEOUT: u64 = u32::MAX as u64;

fn timeout() -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64).range(1..=MAX_TIMEOUT)
}

#[derive(Subcommand, Debug)]
pub enum ShowCommand {
    /// MAC table, like `brctl showmacs`.
    Fdb {
        /// Print a JSON array of {port, mac, local, age_secs, expired} instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Packet and byte counters by reason, like `iptables -nvL`.
    Stats {
        /// Print a JSON array of {code, reason, verdict, packets, bytes} instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Masqueraded flows, like `conntrack -L`.
    Nat {
        /// Print a JSON array of flows with both directions' counters instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Datapath settings.
    Config {
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}
