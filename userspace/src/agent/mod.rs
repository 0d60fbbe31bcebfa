//! What the agent knows beyond the maps, shared by its pieces: the last GC
//! pass's counts (metrics read them instead of walking the NAT table on a
//! scrape; `ebridge status` reads them from the agent's report file), the
//! node changes netlink tells it about, and the flows it expired (for
//! `ebridge monitor`).
pub mod events;
pub mod feed;
pub mod metrics;
pub mod report;
