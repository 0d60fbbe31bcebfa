//! IPAM delegated to another plugin (`"ipam": {"type": "host-local", ...}`)
//! exactly as the reference `bridge` plugin does it: the IPAM plugin is
//! found in CNI_PATH, run with this call's environment (CNI_COMMAND set to
//! the operation) and the whole network config on stdin, and its result
//! or error object passed on.
use std::{
    io::Write as _,
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    process::{Command, Stdio},
};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rscni_types::{
    error::Error,
    types::{CNIResult, ErrorResult},
};

use super::env::CniEnv;

/// The address an IPAM plugin gave the interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    /// An IPv6 address too, when the plugin's ranges have one (the
    /// host-local plugin with an IPv6 range set): the network is dual stack.
    pub v6: Option<(Ipv6Net, Option<Ipv6Addr>)>,
}

fn find(plugin: &str, env: &CniEnv) -> Result<PathBuf, Error> {
    if plugin.contains('/') {
        return Err(Error::InvalidNetworkConfig(format!(
            "ipam.type: {plugin:?} is not a plugin name (no '/')"
        )));
    }
    env.path
        .iter()
        .map(|dir| dir.join(plugin))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::InvalidNetworkConfig(format!(
                "ipam.type: no plugin {plugin:?} in CNI_PATH ({})",
                env.path
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":")
            ))
        })
}

/// Runs the IPAM plugin for `command` ("ADD", "DEL", "CHECK"); its stdout
/// on success.
fn exec(plugin: &str, command: &str, env: &CniEnv, config: &[u8]) -> Result<Vec<u8>, Error> {
    let path = find(plugin, env)?;
    let mut child = Command::new(&path)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", &env.container_id)
        .env(
            "CNI_NETNS",
            env.netns
                .as_deref()
                .unwrap_or_else(|| std::path::Path::new("")),
        )
        .env("CNI_IFNAME", &env.ifname)
        .env(
            "CNI_ARGS",
            env.args
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(";"),
        )
        .env(
            "CNI_PATH",
            std::env::join_paths(&env.path).unwrap_or_default(),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::IOFailure(format!("cannot run IPAM plugin {}: {e}", path.display())))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A plugin that exits without reading is judged by its status.
        let _ = stdin.write_all(config);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::IOFailure(format!("IPAM plugin {plugin}: {e}")))?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    // Its own error object, code and all, is the most useful answer.
    match serde_json::from_slice::<ErrorResult>(&out.stdout) {
        Ok(err) => Err(Error::from(err)),
        Err(_) => Err(Error::IOFailure(format!(
            "IPAM plugin {plugin} {command} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

/// ADD: the plugin's first IPv4 address, and its first IPv6 one if it
/// gave one (results of every layout parse alike: the legacy one only
/// adds `ips[].version`).
pub fn add(plugin: &str, env: &CniEnv, config: &[u8]) -> Result<Lease, Error> {
    let out = exec(plugin, "ADD", env, config)?;
    let result: CNIResult = serde_json::from_slice(&out).map_err(|e| {
        Error::FailedToDecode(format!(
            "IPAM plugin {plugin} gave an unreadable result: {e}"
        ))
    })?;
    let v6 = result.ips.iter().find_map(|ip| match ip.address {
        IpNet::V6(address) => Some((
            address,
            match ip.gateway {
                Some(std::net::IpAddr::V6(g)) => Some(g),
                _ => None,
            },
        )),
        IpNet::V4(_) => None,
    });
    let lease = result.ips.iter().find_map(|ip| match ip.address {
        IpNet::V4(address) => Some(Lease {
            address,
            gateway: match ip.gateway {
                Some(std::net::IpAddr::V4(g)) => Some(g),
                _ => None,
            },
            v6,
        }),
        IpNet::V6(_) => None,
    });
    match lease {
        Some(lease) => Ok(lease),
        None => {
            // Give back whatever it reserved.
            let _ = exec(plugin, "DEL", env, config);
            Err(Error::InvalidNetworkConfig(format!(
                "IPAM plugin {plugin} gave no IPv4 address; ebridge needs one per interface (and takes an IPv6 one beside it)"
            )))
        }
    }
}

/// DEL: releases the reservation; idempotent like the plugin itself.
pub fn del(plugin: &str, env: &CniEnv, config: &[u8]) -> Result<(), Error> {
    exec(plugin, "DEL", env, config).map(|_| ())
}

pub fn check(plugin: &str, env: &CniEnv, config: &[u8]) -> Result<(), Error> {
    exec(plugin, "CHECK", env, config).map(|_| ())
}
