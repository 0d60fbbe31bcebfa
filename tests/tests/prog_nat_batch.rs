//! The agent reads and prunes the NAT table in batches (`batch.rs`):
//! every entry comes back once across chunk boundaries, and a bulk delete
//! removes what it names, skipping keys already gone.
mod common;

use std::collections::HashSet;

use aya::maps::{HashMap, Map};
use common::packet_test::*;
use ebridge::batch;
use ebridge_common::{
    maps::MAP_NAT,
    nat::{NatEntry, NatKey, DIR_REPLY},
};

fn key(i: u32) -> NatKey {
    NatKey {
        saddr: i.to_be_bytes(),
        daddr: [198, 51, 100, 1],
        sport: 53u16.to_be(),
        dport: (i as u16).to_be(),
        proto: 17,
        dir: DIR_REPLY,
        _pad: [0; 2],
    }
}

#[test]
fn batches_read_every_entry_once_and_delete_what_they_name() {
    in_private_netns(|_net| {
        let mut dp = Datapath::load_with_nat_entries(16384);
        {
            let mut nat: HashMap<_, NatKey, NatEntry> = dp
                .ebpf_mut()
                .map_mut(MAP_NAT)
                .expect("nat")
                .try_into()
                .expect("hash map");
            for i in 0..10_000u32 {
                let entry = NatEntry {
                    packets: u64::from(i),
                    ..NatEntry::default()
                };
                nat.insert(key(i), entry, 0).expect("insert");
            }
        }
        let Some(Map::HashMap(data)) = dp.ebpf().map(MAP_NAT) else {
            panic!("nat is a hash map");
        };
        let all = batch::lookup_all::<NatKey, NatEntry>(data).expect("batch read");
        assert_eq!(all.len(), 10_000, "more than two chunks, each entry once");
        let seen: HashSet<[u8; 4]> = all.iter().map(|(k, _)| k.saddr).collect();
        assert_eq!(seen.len(), 10_000);
        assert!(all
            .iter()
            .all(|(k, v)| v.packets == u64::from(u32::from_be_bytes(k.saddr))));

        // 6,000 present keys with absent ones among them.
        let mut doomed: Vec<NatKey> = (0..6_000).map(key).collect();
        for i in 0..50 {
            doomed.insert(i * 100, key(1_000_000 + i as u32));
        }
        batch::delete_all(data, &doomed).expect("batch delete");
        let left = batch::lookup_all::<NatKey, NatEntry>(data).expect("batch read");
        assert_eq!(left.len(), 4_000);
        assert!(left
            .iter()
            .all(|(k, _)| u32::from_be_bytes(k.saddr) >= 6_000));
    });
}
