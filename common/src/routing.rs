//! Native routing (cluster mode): destinations in a native-routing CIDR
//! are routed with the pod's own address instead of masqueraded, and
//! packets from such sources (or from the node's own networks) reach local
//! pods without NAT. Both sets live in the `native_nets` LPM trie, keyed by
//! prefix, valued by what the prefix is.

/// A native-routing CIDR (`up --native-routing-cidr`): routed both ways.
pub const NATIVE_CIDR: u32 = 1 << 0;
/// A network the node is connected to: its hosts may reach pods directly.
pub const NODE_NETWORK: u32 = 1 << 1;
/// This very prefix was given as a native-routing CIDR (a node network
/// inside one inherits `NATIVE_CIDR` without it): what `show config` lists.
pub const NATIVE_GIVEN: u32 = 1 << 2;
