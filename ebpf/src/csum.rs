//! Incremental Internet checksum update (RFC 1624, eqn. 3:
//! `HC' = ~(~HC + ~m + m')`) for programs without the skb checksum helpers
//! (XDP). One's-complement sums do not depend on byte order as long as the
//! checksum and the words are read the same way, so every value here is
//! the raw bytes of the packet read with `from_ne_bytes`.

/// Folds a 32-bit one's-complement sum of up to 65537 16-bit words.
#[inline(always)]
fn fold(sum: u32) -> u16 {
    let sum = (sum & 0xffff) + (sum >> 16);
    ((sum & 0xffff) + (sum >> 16)) as u16
}

/// The checksum after the 16-bit word `old` became `new`.
#[inline(always)]
pub fn replace16(csum: u16, old: u16, new: u16) -> u16 {
    !fold(u32::from(!csum) + u32::from(!old) + u32::from(new))
}

/// The checksum after the 32-bit word (an IPv4 address) `old` became `new`.
#[inline(always)]
pub fn replace32(csum: u16, old: u32, new: u32) -> u16 {
    let sum = u32::from(!csum)
        + u32::from(!(old as u16))
        + u32::from(!((old >> 16) as u16))
        + u32::from(new as u16)
        + u32::from((new >> 16) as u16);
    !fold(sum)
}

/// UDP: a zero checksum means "none" and stays zero (RFC 768); a computed
/// zero is sent as all ones.
#[inline(always)]
pub fn udp_fixup(old: u16, new: u16) -> u16 {
    if old == 0 {
        0
    } else if new == 0 {
        0xffff
    } else {
        new
    }
}

/// Whether a TCP/UDP checksum field holds only the folded pseudo-header sum
/// — what a local sender leaves for checksum offload (CHECKSUM_PARTIAL) —
/// rather than a complete checksum. A complete one equals it by chance in
/// one packet of 65536; such a packet merely takes the slower path.
#[inline(always)]
pub fn is_partial(field: u16, saddr: [u8; 4], daddr: [u8; 4], proto: u8, l4_len: u16) -> bool {
    let s = u32::from_ne_bytes(saddr);
    let d = u32::from_ne_bytes(daddr);
    let sum = (s & 0xffff)
        + (s >> 16)
        + (d & 0xffff)
        + (d >> 16)
        + u32::from(u16::from_ne_bytes([0, proto]))
        + u32::from(u16::from_ne_bytes(l4_len.to_be_bytes()));
    fold(sum) == field
}
