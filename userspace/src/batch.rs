//! Whole-map reads and bulk deletes with `BPF_MAP_LOOKUP_BATCH` and
//! `BPF_MAP_DELETE_BATCH`, which aya 0.14 does not wrap. The agent's GC
//! reads the whole NAT table every pass: key by key (get-next-key, then
//! lookup) that is two syscalls per entry, and a 2-million-entry table
//! kept one CPU busy non-stop; in batches it is one syscall per few
//! thousand entries.
use std::{io, mem::size_of, os::fd::AsRawFd};

use aya::maps::MapData;
use bytemuck::Pod;

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;
/// Entries per syscall.
const CHUNK: usize = 4096;

/// `union bpf_attr`'s `batch` member.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

fn bpf(cmd: libc::c_long, attr: &mut BatchAttr) -> io::Result<()> {
    // SAFETY: attr is a valid, initialised bpf_attr prefix of the size
    // passed; every pointer in it points at live buffers of the sizes the
    // count and the map's key/value sizes imply.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut BatchAttr,
            size_of::<BatchAttr>() as libc::c_uint,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Every entry of a hash map, read in batches. `K` and `V` must be the
/// map's key and value types.
pub fn lookup_all<K: Pod, V: Pod>(map: &MapData) -> io::Result<Vec<(K, V)>> {
    let mut keys = vec![K::zeroed(); CHUNK];
    let mut values = vec![V::zeroed(); CHUNK];
    // The hash map's cursor is a bucket index; 8 bytes hold it.
    let (mut cursor, mut next) = (0u64, 0u64);
    let mut out = Vec::new();
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                &cursor as *const u64 as u64
            },
            out_batch: &mut next as *mut u64 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: CHUNK as u32,
            map_fd: raw_fd(map),
            ..BatchAttr::default()
        };
        let done = match bpf(BPF_MAP_LOOKUP_BATCH, &mut attr) {
            Ok(()) => false,
            // The last batch, possibly with entries.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
            Err(e) => return Err(e),
        };
        let n = (attr.count as usize).min(CHUNK);
        out.extend(keys[..n].iter().copied().zip(values[..n].iter().copied()));
        if done {
            return Ok(out);
        }
        cursor = next;
        first = false;
    }
}

/// Deletes `keys` from a hash map; keys already gone are skipped.
pub fn delete_all<K: Pod>(map: &MapData, keys: &[K]) -> io::Result<()> {
    let mut rest = keys;
    while !rest.is_empty() {
        let n = rest.len().min(CHUNK);
        let mut attr = BatchAttr {
            keys: rest.as_ptr() as u64,
            count: n as u32,
            map_fd: raw_fd(map),
            ..BatchAttr::default()
        };
        match bpf(BPF_MAP_DELETE_BATCH, &mut attr) {
            Ok(()) => rest = &rest[n..],
            // Stopped at a key that is gone (the datapath or another
            // command removed it): skip it and go on.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                rest = &rest[(attr.count as usize + 1).min(rest.len())..];
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn raw_fd(map: &MapData) -> u32 {
    use std::os::fd::AsFd as _;
    map.fd().as_fd().as_raw_fd() as u32
}
