//! `ebridge cni install`: the plugin binary into the runtime's plugin
//! directory and a conflist naming it into its config directory, both
//! written whole (temporary file, then rename) so a runtime never reads
//! half of either.
use std::{
    fs,
    io::Write as _,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use serde_json::{json, Map, Value};

use crate::{cli::CniInstallArgs, error::usage};

pub fn run(args: &CniInstallArgs) -> Result<()> {
    let conflist = conflist(args)?;
    for dir in [&args.bin_dir, &args.conf_dir] {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let exe = std::env::current_exe().context("cannot find the running ebridge binary")?;
    let plugin = args.bin_dir.join("ebridge");
    let same = fs::canonicalize(&plugin).ok() == fs::canonicalize(&exe).ok();
    if !same {
        let bytes = fs::read(&exe).with_context(|| format!("cannot read {}", exe.display()))?;
        write_whole(&plugin, &bytes, 0o755)?;
    }
    let file = args.conf_dir.join(format!("10-{}.conflist", args.name));
    let text = serde_json::to_string_pretty(&conflist)? + "\n";
    write_whole(&file, text.as_bytes(), 0o644)?;
    println!("plugin {}", plugin.display());
    println!("network {} in {}", args.name, file.display());
    Ok(())
}

/// The conflist, checked by the plugin's own config parser so that what
/// `install` writes is what an ADD accepts.
fn conflist(args: &CniInstallArgs) -> Result<Value> {
    let name_ok = {
        let mut c = args.name.chars();
        c.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && c.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    };
    if !name_ok {
        return Err(usage(format!(
            "--name {:?}: a network name is letters and digits, then also '_', '.' or '-'",
            args.name
        )));
    }
    let up = &args.up;
    let mut plugin = Map::new();
    plugin.insert("type".into(), json!("ebridge"));
    plugin.insert("bridge".into(), json!(up.bridge.bridge));
    match &args.ipam {
        Some(ipam) => {
            let subnet = up
                .subnet
                .as_deref()
                .unwrap_or(crate::settings::DEFAULT_SUBNET);
            let mut range = json!({ "subnet": subnet });
            if let Some(gw) = &up.gateway {
                range["gateway"] = json!(gw);
            }
            plugin.insert(
                "ipam".into(),
                json!({ "type": ipam, "ranges": [[range]], "routes": [{ "dst": "0.0.0.0/0" }] }),
            );
        }
        None => {
            if let Some(s) = &up.subnet {
                plugin.insert("subnet".into(), json!(s));
            }
            if let Some(g) = &up.gateway {
                plugin.insert("gateway".into(), json!(g));
            }
        }
    }
    let optional: [(&str, Option<Value>); 6] = [
        ("uplink", up.uplink.as_ref().map(|v| json!(v))),
        ("mtu", up.mtu.map(|v| json!(v))),
        ("fdbAgeing", up.fdb_ageing.map(|v| json!(v))),
        ("natPorts", up.nat_ports.as_ref().map(|v| json!(v))),
        ("natEntries", up.nat_entries.map(|v| json!(v))),
        ("icc", up.no_icc.then_some(json!(false))),
    ];
    for (key, value) in optional {
        if let Some(v) = value {
            plugin.insert(key.into(), v);
        }
    }
    if !up.native_routing_cidr.is_empty() {
        plugin.insert("nativeRoutingCIDRs".into(), json!(up.native_routing_cidr));
    }
    if up.no_masquerade {
        plugin.insert("ipMasq".into(), json!(false));
    }
    if up.xdp.is_some() {
        return Err(usage(
            "--xdp is not a network config key; bring the bridge up with 'ebridge up --xdp ...' before the first container",
        ));
    }
    if !args.dns.is_empty() {
        for ns in &args.dns {
            crate::settings::ipv4("--dns", ns)?;
        }
        plugin.insert("dns".into(), json!({ "nameservers": args.dns }));
    }
    plugin.insert(
        "capabilities".into(),
        json!({ "portMappings": true, "ips": true, "mac": true }),
    );
    // What a runtime would hand the plugin: the plugin's entry plus name
    // and cniVersion.
    let mut as_called = plugin.clone();
    as_called.insert("name".into(), json!(args.name));
    as_called.insert("cniVersion".into(), json!(args.cni_version));
    let called = serde_json::to_vec(&Value::Object(as_called))?;
    super::config::parse(&called).map_err(|e| usage(format!("{e}")))?;
    let version: rscni_types::version::SpecVersion = args.cni_version.parse().map_err(|_| {
        usage(format!(
            "--cni-version {:?} is not a version",
            args.cni_version
        ))
    })?;
    rscni_types::version::PluginInfo::default()
        .validate(version)
        .map_err(|e| usage(format!("--cni-version: {e}")))?;
    Ok(json!({
        "cniVersion": args.cni_version,
        "name": args.name,
        "plugins": [Value::Object(plugin)],
    }))
}

fn write_whole(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp: PathBuf = path.with_extension("ebridge-tmp");
    let mut f =
        fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    drop(f);
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}
