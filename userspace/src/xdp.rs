//! `ebridge up --xdp generic|native`: the uplink's XDP program and what the
//! containers' side needs so that XDP_REDIRECT into their veths delivers.
//!
//! A frame redirected by XDP into a host veth is handed to the veth's
//! `ndo_xdp_xmit`, which queues it on the *peer's* (the container
//! interface's) NAPI ring. That ring only exists while the peer runs an XDP
//! program of its own or has GRO enabled (veth NAPI, kernel 5.13+);
//! otherwise the kernel drops the frame (`-EOPNOTSUPP` on kernel 6.18,
//! seen only on the `xdp:xdp_redirect_err` tracepoint). `endpoint add`
//! therefore turns GRO on for the container's interface when the bridge
//! runs native XDP, with the ethtool ioctl (`ETHTOOL_SGRO`) from inside the
//! container's netns. Generic mode needs nothing: its redirect hands an skb
//! to the veth's ordinary transmit.
use std::{
    ffi::CString,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::Path,
};

use anyhow::{Context as _, Result};
use aya::{
    programs::{links::FdLink, ProgramError, Xdp},
    Ebpf,
};
use ebridge_common::{
    config::{CONFIG_F_XDP_GENERIC, CONFIG_F_XDP_NATIVE},
    maps::PROG_UPLINK_XDP,
};

use crate::{cli::XdpMode, error::usage, pins};

/// Name of the uplink's XDP link under `links/`.
pub const LINK_UPLINK_XDP: &str = "uplink-xdp";

/// The `CONFIG_F_XDP_*` bit of a mode.
pub fn config_flags(mode: XdpMode) -> u32 {
    match mode {
        XdpMode::Off => 0,
        XdpMode::Generic => CONFIG_F_XDP_GENERIC,
        XdpMode::Native => CONFIG_F_XDP_NATIVE,
    }
}

/// The mode a live config was brought up with.
pub fn mode_of(flags: u32) -> XdpMode {
    if flags & CONFIG_F_XDP_NATIVE != 0 {
        XdpMode::Native
    } else if flags & CONFIG_F_XDP_GENERIC != 0 {
        XdpMode::Generic
    } else {
        XdpMode::Off
    }
}

pub fn label(mode: XdpMode) -> &'static str {
    match mode {
        XdpMode::Off => "off",
        XdpMode::Generic => "generic",
        XdpMode::Native => "native",
    }
}

/// Whether the containers of a bridge with these config flags need their
/// interface made ready for XDP frames. Only native mode does: generic
/// mode's redirect transmits an skb through the veth like any other.
pub fn needs_container_gro(flags: u32) -> bool {
    flags & CONFIG_F_XDP_NATIVE != 0
}

/// Loads `uplink_xdp` from the datapath object (sharing its pinned maps),
/// pins it and attaches it to `uplink` in `mode` with a pinned link
/// (`links/uplink-xdp`), so `down` removes it with the pin directory.
/// Native mode on a device without driver support is a usage error.
pub fn attach_uplink(ebpf: &mut Ebpf, bridge: &str, uplink: &str, mode: XdpMode) -> Result<()> {
    let aya_mode = match mode {
        XdpMode::Off => return Ok(()),
        XdpMode::Generic => aya::programs::XdpMode::Skb,
        XdpMode::Native => aya::programs::XdpMode::Driver,
    };
    let prog: &mut Xdp = ebpf
        .program_mut(PROG_UPLINK_XDP)
        .with_context(|| format!("eBPF object has no program {PROG_UPLINK_XDP}"))?
        .try_into()?;
    prog.load()
        .with_context(|| format!("the kernel rejected program {PROG_UPLINK_XDP}"))?;
    prog.pin(pins::prog_path(bridge, PROG_UPLINK_XDP))
        .with_context(|| format!("cannot pin program {PROG_UPLINK_XDP}"))?;
    let id = match prog.attach(uplink, aya_mode) {
        Ok(id) => id,
        Err(e) => return Err(attach_error(e, uplink, mode)),
    };
    let link: FdLink = prog.take_link(id)?.try_into().with_context(|| {
        format!("the kernel attached XDP to {uplink} without a BPF link; it cannot be pinned")
    })?;
    link.pin(pins::link_path(bridge, LINK_UPLINK_XDP))
        .with_context(|| format!("cannot pin the link of {LINK_UPLINK_XDP}"))?;
    Ok(())
}

fn attach_error(e: ProgramError, uplink: &str, mode: XdpMode) -> anyhow::Error {
    let errno = match &e {
        ProgramError::SyscallError(sys) => sys.io_error.raw_os_error(),
        _ => None,
    };
    match errno {
        Some(libc::EOPNOTSUPP) if mode == XdpMode::Native => usage(format!(
            "uplink {uplink} has no native (driver) XDP support; use --xdp generic or --xdp off"
        )),
        Some(libc::EBUSY) | Some(libc::EEXIST) => usage(format!(
            "uplink {uplink} already has an XDP program attached; remove it or use --xdp off"
        )),
        _ => anyhow::Error::new(e)
            .context(format!("cannot attach XDP ({}) to {uplink}", label(mode))),
    }
}

/// Turns GRO on for `ifname` in the netns at `netns` (the container's
/// side of a veth), which gives the veth the NAPI ring XDP_REDIRECT needs.
pub fn prepare_container(netns: &Path, ifname: &str) -> Result<()> {
    let ifname = ifname.to_string();
    crate::netlink::in_netns(netns, move |_nl| async move {
        set_gro(&ifname, true)?;
        if !gro(&ifname)? {
            anyhow::bail!("GRO did not stay on for {ifname}; XDP-redirected replies would be lost");
        }
        Ok(())
    })
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `struct ifreq` with `ifr_data` (40 bytes on 64-bit).
#[repr(C)]
struct IfreqData {
    name: [u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

fn ethtool(ifname: &str, value: &mut EthtoolValue) -> Result<()> {
    let name = CString::new(ifname)?;
    let bytes = name.as_bytes_with_nul();
    if bytes.len() > libc::IFNAMSIZ {
        anyhow::bail!("interface name {ifname} is too long");
    }
    let mut req = IfreqData {
        name: [0; libc::IFNAMSIZ],
        data: (value as *mut EthtoolValue).cast(),
        _pad: [0; 16],
    };
    req.name[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: plain socket(2).
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(std::io::Error::last_os_error()).context("cannot open a socket for ethtool");
    }
    // SAFETY: `sock` is open and owned by nothing else; closed on drop.
    let sock = unsafe { OwnedFd::from_raw_fd(sock) };
    // SAFETY: a socket we own; `req` and `value` outlive the ioctl.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut req) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("ethtool ioctl {:#x} on {ifname}", value.cmd));
    }
    Ok(())
}

fn set_gro(ifname: &str, on: bool) -> Result<()> {
    let mut v = EthtoolValue {
        cmd: ETHTOOL_SGRO,
        data: u32::from(on),
    };
    ethtool(ifname, &mut v).with_context(|| format!("cannot turn GRO on for {ifname}"))
}

fn gro(ifname: &str) -> Result<bool> {
    let mut v = EthtoolValue {
        cmd: ETHTOOL_GGRO,
        data: 0,
    };
    ethtool(ifname, &mut v)?;
    Ok(v.data != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_through_the_config_flags() {
        for mode in [XdpMode::Off, XdpMode::Generic, XdpMode::Native] {
            assert_eq!(mode_of(config_flags(mode)), mode);
            // Other flags (icc, masquerade) do not disturb it.
            assert_eq!(mode_of(config_flags(mode) | 0b11), mode);
        }
        assert!(needs_container_gro(config_flags(XdpMode::Native)));
        assert!(!needs_container_gro(config_flags(XdpMode::Generic)));
        assert!(!needs_container_gro(config_flags(XdpMode::Off)));
    }

    #[test]
    fn ifreq_has_the_kernels_size() {
        assert_eq!(std::mem::size_of::<IfreqData>(), 40);
    }
}
