//! The `ebridge` library: the CLI's commands, and the pieces a CNI plugin or
//! the agent reuse.
pub mod agent;
pub mod batch;
pub mod cli;
pub mod cmd;
pub mod cni;
pub mod datapath;
pub mod error;
pub mod ipam;
pub mod maps;
pub mod nat;
pub mod netlink;
pub mod netns;
pub mod node_flows;
pub mod pins;
pub mod proc_net;
pub mod publish;
pub mod settings;
pub mod state;
pub mod xdp;
