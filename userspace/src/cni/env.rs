//! The CNI_* environment variables a runtime sets for each call. Only
//! these and the config are relied on: podman's cleanup process passes
//! nothing else of its caller's environment.
use std::path::PathBuf;

use rscni_types::{error::Error, types::Cmd};

#[derive(Debug)]
pub struct CniEnv {
    pub command: Cmd,
    pub container_id: String,
    /// Empty for containerd's DEL (the namespace is gone by then).
    pub netns: Option<PathBuf>,
    pub ifname: String,
    /// `CNI_ARGS`: `K=V` pairs separated by `;`.
    pub args: Vec<(String, String)>,
    /// Where delegated plugins (IPAM) are looked for.
    pub path: Vec<PathBuf>,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Reads the environment for a command other than VERSION (which needs
/// none of it). What `command` requires and is missing is CNI error 4.
pub fn read() -> Result<CniEnv, Error> {
    let command: Cmd = var("CNI_COMMAND")
        .ok_or_else(|| Error::missing_env(&["CNI_COMMAND"]))?
        .parse()
        .map_err(|_| {
            Error::InvalidEnvValue(format!(
                "CNI_COMMAND={:?} is not a CNI command; expected ADD, DEL, CHECK, STATUS, GC or VERSION",
                std::env::var("CNI_COMMAND").unwrap_or_default()
            ))
        })?;
    let needs_attachment = matches!(command, Cmd::Add | Cmd::Del | Cmd::Check);
    let mut missing = Vec::new();
    let container_id = var("CNI_CONTAINERID").unwrap_or_default();
    let ifname = var("CNI_IFNAME").unwrap_or_default();
    if needs_attachment && container_id.is_empty() {
        missing.push("CNI_CONTAINERID");
    }
    if needs_attachment && ifname.is_empty() {
        missing.push("CNI_IFNAME");
    }
    let netns = var("CNI_NETNS").map(PathBuf::from);
    // DEL must work without a namespace (it may be gone already).
    if matches!(command, Cmd::Add | Cmd::Check) && netns.is_none() {
        missing.push("CNI_NETNS");
    }
    if !missing.is_empty() {
        return Err(Error::missing_env(&missing));
    }
    if needs_attachment {
        check_container_id(&container_id)?;
        check_ifname(&ifname)?;
    }
    Ok(CniEnv {
        command,
        container_id,
        netns,
        ifname,
        args: parse_args(&var("CNI_ARGS").unwrap_or_default())?,
        path: var("CNI_PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default(),
    })
}

/// The spec's rule: alphanumerics first, then also `_`, `.` and `-`.
fn check_container_id(id: &str) -> Result<(), Error> {
    let mut chars = id.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidEnvValue(format!(
            "CNI_CONTAINERID={id:?}: expected letters and digits, then also '_', '.' or '-'"
        )))
    }
}

fn check_ifname(name: &str) -> Result<(), Error> {
    crate::settings::interface_name("interface", name)
        .map_err(|e| Error::InvalidEnvValue(format!("CNI_IFNAME={name:?}: {e}")))
}

fn parse_args(text: &str) -> Result<Vec<(String, String)>, Error> {
    text.split(';')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| {
                    Error::InvalidEnvValue(format!(
                        "CNI_ARGS: {kv:?} is not KEY=VALUE (pairs are separated by ';')"
                    ))
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cni_args_pairs() {
        let args = parse_args("IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.0.0.5").expect("valid");
        assert_eq!(args.len(), 3);
        assert_eq!(args[2], ("IP".to_string(), "10.0.0.5".to_string()));
        assert!(parse_args("").expect("empty").is_empty());
        assert!(parse_args("novalue").is_err());
    }

    #[test]
    fn container_ids_and_ifnames() {
        assert!(check_container_id("default-web").is_ok());
        assert!(check_container_id(&"a".repeat(64)).is_ok());
        assert!(check_container_id("-x").is_err());
        assert!(check_container_id("a/b").is_err());
        assert!(check_ifname("eth0").is_ok());
        assert!(check_ifname("a/b").is_err());
    }
}
