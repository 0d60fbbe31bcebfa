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
