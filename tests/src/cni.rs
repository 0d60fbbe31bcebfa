//! Calling the `ebridge` binary as a CNI plugin, the way a runtime does:
//! CNI_* variables, the network config on stdin, a JSON answer on stdout;
//! inside the lab's node namespace.
use std::{
    io::Write as _,
    process::{Command, Stdio},
};

use serde_json::{json, Value};

use crate::lab::{ebridge_bin, run_ok, Lab};

/// The reference plugins (Debian's containernetworking-plugins).
pub const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

/// One plugin call's answer.
#[derive(Debug)]
pub struct Answer {
    pub ok: bool,
    pub code: Option<i32>,
    /// stdout parsed as JSON (Null when empty).
    pub json: Value,
    pub stdout: String,
    pub stderr: String,
}

impl Answer {
    /// The CNI error code of a failed call.
    pub fn error_code(&self) -> u64 {
        assert!(!self.ok, "the call succeeded: {}", self.stdout);
        self.json["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("no error object on stdout: {:?}", self.stdout))
    }
}

/// A call's environment beyond the command.
#[derive(Clone, Debug, Default)]
pub struct Call {
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: String,
    pub path: String,
}

impl Call {
    pub fn new(container_id: &str, netns: &str) -> Self {
        Self {
            container_id: container_id.to_string(),
            netns: netns.to_string(),
            ifname: "eth0".to_string(),
            args: String::new(),
            path: REFERENCE_PLUGINS.to_string(),
        }
    }
}

/// Runs `plugin` (the ebridge binary by default) in the lab's node with
/// `CNI_COMMAND=command` and `config` on stdin. Only the CNI variables and
/// PATH are passed, as podman's cleanup process passes them.
pub fn call_plugin(lab: &Lab, plugin: &str, command: &str, call: &Call, config: &Value) -> Answer {
    let net = format!("--net=/run/netns/{}", lab.node);
    let mut child = Command::new("nsenter")
        .args([&net, plugin])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", &call.container_id)
        .env("CNI_NETNS", &call.netns)
        .env("CNI_IFNAME", &call.ifname)
        .env("CNI_ARGS", &call.args)
        .env("CNI_PATH", &call.path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {plugin}: {e}"));
    let input = serde_json::to_vec(config).expect("config JSON");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&input)
        .expect("write config");
    let out = child.wait_with_output().expect("plugin output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = if stdout.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!("{command}: stdout is not one JSON document ({e}): {stdout:?}")
        })
    };
    Answer {
        ok: out.status.success(),
        code: out.status.code(),
        json,
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The ebridge plugin.
pub fn call(lab: &Lab, command: &str, call: &Call, config: &Value) -> Answer {
    let bin = ebridge_bin();
    call_plugin(lab, bin.to_str().expect("utf-8"), command, call, config)
}

/// A successful call's answer; panics with the plugin's output otherwise.
pub fn call_ok(lab: &Lab, command: &str, c: &Call, config: &Value) -> Value {
    let a = call(lab, command, c, config);
    assert!(a.ok, "{command} failed: {}{}", a.stdout, a.stderr);
    a.json
}

/// A network config as a runtime hands it to the first plugin: the
/// plugin's entry plus `name` and `cniVersion`, on the lab's bridge.
pub fn net_config(lab: &Lab, version: &str, extra: Value) -> Value {
    let mut c = json!({
        "cniVersion": version,
        "name": format!("{}net", lab.id),
        "type": "ebridge",
        "bridge": lab.bridge,
    });
    if let (Some(obj), Some(more)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in more {
            obj.insert(k.clone(), v.clone());
        }
    }
    c
}

/// A container namespace of the lab (removed with the lab).
pub fn container_netns(lab: &Lab, short: &str) -> String {
    let name = lab.name(short);
    run_ok("ip", &["netns", "add", &name]);
    format!("/run/netns/{name}")
}
