//! Packaging (issue 10) as a packager and an operator meet it: completion
//! scripts each shell accepts and that complete, a man page per command
//! that renders, the systemd unit (verified, and its capabilities enough for
//! the agent), the Kubernetes manifest (parsed, its shell steps run), and
//! `--log-format json` giving one JSON object per line while CNI mode keeps
//! stdout for its result.
use std::{
    collections::BTreeSet,
    fs,
    io::{BufRead as _, BufReader, Read as _},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use clap::{CommandFactory as _, Parser as _};
use ebridge::cli::{Cli, Command as EbridgeCommand};
use ebridge_tests::{
    cni::container_netns,
    lab::{ebridge_bin, run, stderr, stdout, Lab},
    procs::PY,
};
use serde_json::{json, Value};

fn dist(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../userspace/dist")
        .join(rel)
}

fn bin() -> String {
    ebridge_bin().to_str().expect("utf-8 path").to_string()
}

/// A directory removed with the test, also when it panics.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ebridge-pkg-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool} >/dev/null")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A check this machine cannot make, said out loud rather than passed over.
fn skipped(what: &str, why: &str) {
    println!("note: {what} skipped: {why}");
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

/// One line on stderr and exit status 2, as every bad input gets.
fn refused(args: &[&str], needle: &str) {
    let out = run(&bin(), args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
}

/// The names a user types after `ebridge`.
fn top_level_commands() -> Vec<String> {
    Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect()
}

#[test]
fn completions_for_every_shell() {
    let dir = TempDir::new("completions");
    let commands = top_level_commands();
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&bin(), &["completions", shell]);
        let script = ok(&out, &format!("completions {shell}"));
        assert!(stderr(&out).is_empty(), "{shell}: {}", stderr(&out));
        assert!(script.len() > 200, "{shell}: {script:?}");
        for name in &commands {
            assert!(
                script.contains(name.as_str()),
                "{shell} script lacks {name}"
            );
        }
        assert!(
            script.contains("log-format"),
            "{shell} script lacks --log-format"
        );
        let file = dir.path().join(format!("ebridge.{shell}"));
        fs::write(&file, &script).expect("write script");
        let file = file.to_str().expect("utf-8");
        let syntax_check = match shell {
            "fish" => ["--no-execute", file],
            _ => ["-n", file],
        };
        if have(shell) {
            ok(
                &run(shell, &syntax_check),
                &format!("{shell} {syntax_check:?}"),
            );
        } else {
            assert_ne!(shell, "bash", "bash is needed for this test");
            skipped(
                &format!("{shell} syntax check"),
                &format!("{shell} is not installed"),
            );
        }
    }

    // What a user gets pressing Tab in bash: a subcommand from its prefix,
    // the second level, the values of --log-format.
    let bash_file = dir.path().join("ebridge.bash");
    let complete = |words: &[&str]| -> BTreeSet<String> {
        let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
        let cword = words.len() - 1;
        let prev = words[cword.saturating_sub(1)];
        let script = format!(
            "source '{}'\nCOMP_WORDS=({})\nCOMP_CWORD={cword}\n_ebridge ebridge '{}' '{prev}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
            bash_file.display(),
            quoted.join(" "),
            words[cword]
        );
        ok(&run("bash", &["-c", &script]), "bash completion")
            .lines()
            .map(str::to_string)
            .collect()
    };
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(complete(&["ebridge", "sh"]), set(&["show"]));
    assert_eq!(complete(&["ebridge", "comp"]), set(&["completions"]));
    let show = complete(&["ebridge", "show", ""]);
    assert!(
        set(&["fdb", "stats", "nat", "config"]).is_subset(&show),
        "{show:?}"
    );
    assert_eq!(
        complete(&["ebridge", "agent", "--log-format", ""]),
        set(&["text", "json"])
    );

    if have("fish") {
        let script = format!(
            "source '{}'; complete -C 'ebridge sh'",
            dir.path().join("ebridge.fish").display()
        );
        let got = ok(&run("fish", &["-c", &script]), "fish completion");
        assert!(got.starts_with("show\t"), "{got:?}");
    }

    // Packagers build as an unprivileged user: no root needed for this.
    let out = run(
        "setpriv",
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            &bin(),
            "completions",
            "fish",
        ],
    );
    assert!(!ok(&out, "completions as nobody").is_empty());
    refused(&["completions", "tcsh"], "'tcsh'");
    refused(&["completions"], "<SHELL>");
}

/// `ebridge`, `ebridge-up`, `ebridge-endpoint-add`, ...: every command but
/// clap's `help`, with its long options.
fn expected_pages() -> Vec<(String, Vec<String>)> {
    fn walk(cmd: &clap::Command, prefix: &str, out: &mut Vec<(String, Vec<String>)>) {
        let longs = cmd
            .get_arguments()
            .filter(|a| !a.is_hide_set())
            .filter_map(|a| a.get_long().map(str::to_string))
            .collect();
        out.push((prefix.to_string(), longs));
        for sub in cmd.get_subcommands() {
            if sub.get_name() != "help" {
                walk(sub, &format!("{prefix}-{}", sub.get_name()), out);
            }
        }
    }
    let mut cmd = Cli::command();
    cmd.build();
    let mut out = Vec::new();
    walk(&cmd, "ebridge", &mut out);
    out
}

#[test]
fn man_pages_for_every_command() {
    let dir = TempDir::new("man");
    let man1 = dir.path().join("share/man/man1");
    let out = run(&bin(), &["man", "--dir", man1.to_str().expect("utf-8")]);
    let listed = ok(&out, "ebridge man");
    let expected = expected_pages();
    let written: BTreeSet<String> = fs::read_dir(&man1)
        .expect("man dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    let wanted: BTreeSet<String> = expected.iter().map(|(n, _)| format!("{n}.1")).collect();
    assert_eq!(written, wanted);
    assert!(wanted.len() >= 20, "{wanted:?}");
    assert_eq!(listed.lines().count(), wanted.len(), "{listed}");
    for page in [
        "ebridge.1",
        "ebridge-up.1",
        "ebridge-agent.1",
        "ebridge-cni-install.1",
    ] {
        assert!(written.contains(page), "{page} missing: {written:?}");
    }

    let (man, groff) = (have("man"), have("groff"));
    if !man && !groff {
        skipped(
            "rendering the man pages",
            "neither man nor groff is installed; roff headers checked only",
        );
    }
    for (name, longs) in &expected {
        let file = man1.join(format!("{name}.1"));
        let roff = fs::read_to_string(&file).expect("page");
        // roff escapes '-' in text as '\-'.
        let escaped = |s: &str| s.replace('-', "\\-");
        assert!(roff.contains(&format!(".TH {name} 1 ")), "{name}: {roff}");
        assert!(roff.contains(".SH NAME"), "{name}");
        assert!(roff.contains(&escaped(name)), "{name}");
        for long in longs {
            assert!(
                roff.contains(&format!("\\fB{}\\fR", escaped(&format!("--{long}")))),
                "{name}.1 does not document --{long}"
            );
        }
        let file = file.to_str().expect("utf-8");
        if man {
            let out = Command::new("man")
                .args(["--warnings", "-l", "-P", "cat", file])
                .env("MANWIDTH", "100")
                .output()
                .expect("man");
            let text = ok(&out, &format!("man -l {name}.1"));
            assert!(stderr(&out).is_empty(), "{name}.1: {}", stderr(&out));
            assert!(text.contains(&format!("{name}(1)")), "{name}: {text}");
            assert!(text.contains("SYNOPSIS"), "{name}: {text}");
        } else if groff {
            let out = run("groff", &["-k", "-man", "-Tutf8", "-ww", "-z", file]);
            ok(&out, &format!("groff {name}.1"));
            assert!(stderr(&out).is_empty(), "{name}.1: {}", stderr(&out));
        }
    }

    // With MANPATH on it, `man ebridge-agent` finds the page by name.
    if man {
        let out = Command::new("man")
            .args(["-P", "cat", "ebridge-agent"])
            .env("MANPATH", dir.path().join("share/man"))
            .output()
            .expect("man");
        assert!(ok(&out, "man ebridge-agent").contains("gc-interval"));
    }

    let nobody_dir =
        std::env::temp_dir().join(format!("ebridge-pkg-{}-nobody", std::process::id()));
    let _ = fs::remove_dir_all(&nobody_dir);
    let out = run(
        "setpriv",
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            &bin(),
            "man",
            "--dir",
            nobody_dir.to_str().expect("utf-8"),
        ],
    );
    let _ = fs::remove_dir_all(&nobody_dir);
    ok(&out, "man as nobody");
    let not_dir = dir.path().join("a-file");
    fs::write(&not_dir, "").expect("file");
    refused(
        &["man", "--dir", not_dir.to_str().expect("utf-8")],
        "not a directory",
    );
}

/// `[Section]` → (key, value) in file order; comments and blanks dropped.
fn unit_entries(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not key=value: {line}"));
        out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
    }
    out
}

fn unit_value(entries: &[(String, String, String)], section: &str, key: &str) -> Option<String> {
    entries
        .iter()
        .rev()
        .find(|(s, k, _)| s == section && k == key)
        .map(|(_, _, v)| v.clone())
}

const UNIT: &str = "ebridge-agent.service";

#[test]
fn systemd_unit() {
    let text = fs::read_to_string(dist(UNIT)).expect("unit file");
    let entries = unit_entries(&text);
    let get = |s: &str, k: &str| unit_value(&entries, s, k);
    let exec = get("Service", "ExecStart").expect("ExecStart");
    let argv: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(argv[0], "/usr/local/bin/ebridge", "{exec}");
    // The unit's command line is one the binary accepts.
    let mut parse_args = vec!["ebridge"];
    parse_args.extend(&argv[1..]);
    let cli = Cli::try_parse_from(&parse_args).unwrap_or_else(|e| panic!("{exec}: {e}"));
    match cli.command {
        EbridgeCommand::Agent(args) => assert_eq!(args.bridge.bridge, "ebr0"),
        other => panic!("ExecStart runs {other:?}, not the agent"),
    }
    assert_eq!(get("Service", "Restart").as_deref(), Some("always"));
    assert_eq!(get("Unit", "StartLimitIntervalSec").as_deref(), Some("0"));
    assert_eq!(
        get("Install", "WantedBy").as_deref(),
        Some("multi-user.target")
    );
    let caps = get("Service", "CapabilityBoundingSet").expect("CapabilityBoundingSet");
    for cap in ["CAP_BPF", "CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_PERFMON"] {
        assert!(
            caps.split_whitespace().any(|c| c == cap),
            "{caps} lacks {cap}"
        );
    }
    // Each of these gives the service a mount namespace of its own, where a
    // bpffs or netns unmount of the agent's would not be the host's.
    for key in [
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "PrivateMounts",
        "ProtectKernelTunables",
        "ProtectControlGroups",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectHostname",
        "ProtectProc",
        "ReadOnlyPaths",
        "TemporaryFileSystem",
    ] {
        assert!(get("Service", key).is_none(), "{key}= in the unit");
    }

    if !have("systemd-analyze") {
        skipped(
            "systemd-analyze verify of the unit",
            "systemd-analyze is not installed; the unit was parsed for ExecStart and Restart=always only",
        );
        return;
    }
    // verify checks that ExecStart's binary exists and that the
    // Documentation= pages do: point it at the built binary and at pages
    // generated here, and change nothing else.
    let dir = TempDir::new("unit");
    let man1 = dir.path().join("man/man1");
    ok(
        &run(&bin(), &["man", "--dir", man1.to_str().expect("utf-8")]),
        "ebridge man",
    );
    let unit = dir.path().join(UNIT);
    fs::write(&unit, text.replace("/usr/local/bin/ebridge", &bin())).expect("unit copy");
    let out = Command::new("systemd-analyze")
        .args(["verify", unit.to_str().expect("utf-8")])
        .env("MANPATH", dir.path().join("man"))
        .current_dir(dir.path())
        .output()
        .expect("systemd-analyze");
    ok(&out, "systemd-analyze verify");
    assert!(
        stderr(&out).trim().is_empty(),
        "systemd-analyze verify: {}",
        stderr(&out)
    );
}

/// The manifest's documents, parsed by PyYAML and handed over as JSON.
fn manifest() -> Vec<Value> {
    let path = dist("kubernetes/ebridge.yaml");
    let script = format!(
        "import json, sys, yaml\n\
         docs = [d for d in yaml.safe_load_all(open({:?})) if d is not None]\n\
         json.dump(docs, sys.stdout)\n",
        path.to_str().expect("utf-8")
    );
    let out = run(PY, &["-c", &script]);
    let text = ok(&out, "parsing the manifest with PyYAML (python3-yaml)");
    match serde_json::from_str(&text).expect("JSON from python") {
        Value::Array(docs) => docs,
        other => panic!("not a list of documents: {other}"),
    }
}

fn daemonset(docs: &[Value]) -> &Value {
    let ds: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "DaemonSet").collect();
    assert_eq!(ds.len(), 1, "one DaemonSet expected");
    &ds[0]["spec"]["template"]["spec"]
}

fn containers(pod: &Value, key: &str) -> Vec<Value> {
    pod[key].as_array().cloned().unwrap_or_default()
}

/// A container's `sh -c` script.
fn script(container: &Value) -> String {
    let command: Vec<&str> = container["command"]
        .as_array()
        .expect("command")
        .iter()
        .map(|v| v.as_str().expect("string"))
        .collect();
    assert_eq!(command, ["/bin/sh", "-c"], "{}", container["name"]);
    container["args"][0].as_str().expect("script").to_string()
}

/// The container's env entries with plain values.
fn env_of(container: &Value) -> Vec<(String, String)> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_string(),
                e["value"].as_str()?.to_string(),
            ))
        })
        .collect()
}

#[test]
fn kubernetes_manifest() {
    let docs = manifest();
    let kinds: BTreeSet<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    for kind in [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "DaemonSet",
    ] {
        assert!(kinds.contains(kind), "no {kind}: {kinds:?}");
    }
    let pod = daemonset(&docs);
    assert_eq!(pod["hostNetwork"], true);
    assert!(pod["tolerations"]
        .as_array()
        .expect("tolerations")
        .iter()
        .any(|t| t["operator"] == "Exists" && t.get("key").is_none()));

    let volumes: Vec<(String, String)> = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .filter_map(|v| {
            Some((
                v["name"].as_str()?.to_string(),
                v["hostPath"]["path"].as_str()?.to_string(),
            ))
        })
        .collect();
    let volume_for = |host: &str| -> String {
        volumes
            .iter()
            .find(|(_, p)| p == host)
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| panic!("no hostPath volume for {host}: {volumes:?}"))
    };
    let mount = |c: &Value, host: &str| -> Option<Value> {
        let name = volume_for(host);
        c["volumeMounts"]
            .as_array()?
            .iter()
            .find(|m| m["name"] == name.as_str())
            .cloned()
    };

    let inits = containers(pod, "initContainers");
    let mains = containers(pod, "containers");
    let install = inits
        .iter()
        .find(|c| script(c).contains("ebridge cni install"))
        .expect("an init container running ebridge cni install");
    let agent = mains
        .iter()
        .find(|c| script(c).contains("ebridge agent"))
        .expect("a container running ebridge agent");
    assert_eq!(agent["securityContext"]["privileged"], true);
    let bpffs = mount(agent, "/sys/fs/bpf").expect("the agent mounts /sys/fs/bpf");
    assert_eq!(bpffs["mountPath"], "/sys/fs/bpf");
    assert_eq!(bpffs["mountPropagation"], "Bidirectional");
    for host in ["/sys/fs/cgroup", "/run/ebridge", "/run/netns"] {
        let m = mount(agent, host).unwrap_or_else(|| panic!("the agent lacks {host}"));
        assert_eq!(m["mountPath"], host);
    }
    assert_eq!(
        mount(install, "/opt/cni/bin").expect("cni bin")["mountPath"],
        "/host/opt/cni/bin"
    );
    assert_eq!(
        mount(install, "/etc/cni/net.d").expect("cni conf")["mountPath"],
        "/host/etc/cni/net.d"
    );
    let images: BTreeSet<&str> = inits
        .iter()
        .chain(&mains)
        .filter_map(|c| c["image"].as_str())
        .collect();
    assert_eq!(images.len(), 1, "one image for all: {images:?}");
    for c in inits.iter().chain(&mains) {
        ok(
            &run("sh", &["-n", "-c", &script(c)]),
            &format!("sh -n of {}", c["name"]),
        );
    }

    install_step(install);
}

/// Runs the init container's script as the container would, under a
/// temporary /host: with POD_CIDR given, from a (fake, TLS) API server's
/// node object, and with no pod CIDR to be had.
fn install_step(container: &Value) {
    let dir = TempDir::new("install");
    let sa = dir.path().join("serviceaccount");
    let text = script(container)
        .replace("/host/", &format!("{}/host/", dir.path().display()))
        .replace(
            "/var/run/secrets/kubernetes.io/serviceaccount",
            sa.to_str().expect("utf-8"),
        );
    let bin_dir = ebridge_bin().parent().expect("bin dir").to_path_buf();
    let env = env_of(container);
    let var = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let bridge = var("BRIDGE").expect("BRIDGE in the manifest");
    let cluster = var("CLUSTER_CIDR").expect("CLUSTER_CIDR in the manifest");
    let conflist = dir.path().join("host/etc/cni/net.d/10-ebridge.conflist");
    let plugin = dir.path().join("host/opt/cni/bin/ebridge");
    let run_script = |extra: &[(&str, &str)]| -> Output {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", &text])
            .env_clear()
            .env(
                "PATH",
                format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin_dir.display()),
            )
            .env("NODE_NAME", "node-7");
        for (k, v) in &env {
            cmd.env(k, v);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.output().expect("install script")
    };
    let check = |subnet: &str| {
        let c: Value =
            serde_json::from_str(&fs::read_to_string(&conflist).expect("conflist")).expect("JSON");
        let p = &c["plugins"][0];
        assert_eq!(p["type"], "ebridge", "{c}");
        assert_eq!(p["bridge"], bridge.as_str(), "{c}");
        assert_eq!(p["subnet"], subnet, "{c}");
        assert_eq!(p["nativeRoutingCIDRs"], json!([cluster]), "{c}");
        let meta = fs::metadata(&plugin).expect("plugin installed");
        assert!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0,
            "plugin not executable"
        );
    };

    ok(
        &run_script(&[("POD_CIDR", "10.244.7.0/24")]),
        "install with POD_CIDR",
    );
    check("10.244.7.0/24");
    fs::remove_file(&conflist).expect("rm conflist");

    // No API server to ask: the step fails saying what to do.
    let out = run_script(&[
        ("POD_CIDR", ""),
        ("KUBERNETES_SERVICE_HOST", "127.0.0.1"),
        ("KUBERNETES_SERVICE_PORT", "1"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("spec.podCIDR") && stderr(&out).contains("POD_CIDR"),
        "{}",
        stderr(&out)
    );
    assert!(!conflist.exists(), "a conflist without a pod CIDR");

    if !have("openssl") || !have("curl") {
        skipped(
            "the pod CIDR lookup against an API server",
            "openssl or curl is not installed",
        );
        return;
    }
    fs::create_dir_all(&sa).expect("sa dir");
    let (cert, key) = (sa.join("ca.crt"), sa.join("key.pem"));
    ok(
        &run(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-keyout",
                key.to_str().expect("utf-8"),
                "-out",
                cert.to_str().expect("utf-8"),
            ],
        ),
        "openssl req",
    );
    fs::write(sa.join("token"), "sekrit-token").expect("token");
    let mut api = FakeApiServer::start(&cert, &key);
    let port = api.port.to_string();
    let out = run_script(&[
        ("POD_CIDR", ""),
        ("KUBERNETES_SERVICE_HOST", "127.0.0.1"),
        ("KUBERNETES_SERVICE_PORT", &port),
    ]);
    let requests = api.stop();
    ok(&out, "install with the pod CIDR from the API server");
    assert!(
        requests.contains("GET /api/v1/nodes/node-7 Bearer sekrit-token"),
        "{requests}"
    );
    check("10.244.9.0/24");
}

/// Answers GET /api/v1/nodes/NAME over TLS with a node whose spec.podCIDR
/// is 10.244.9.0/24, pretty-printed as the API server does for curl; logs
/// each request's path and bearer token.
struct FakeApiServer {
    child: Option<Child>,
    port: u16,
}

impl FakeApiServer {
    fn start(cert: &Path, key: &Path) -> Self {
        let script = format!(
            r#"
import http.server, json, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        token = self.headers.get("Authorization", "").removeprefix("Bearer ")
        sys.stderr.write("GET %s Bearer %s\n" % (self.path, token)); sys.stderr.flush()
        name = self.path.rsplit("/", 1)[-1]
        node = {{"kind": "Node", "apiVersion": "v1", "metadata": {{"name": name}},
                "spec": {{"podCIDR": "10.244.9.0/24", "podCIDRs": ["10.244.9.0/24"]}}}}
        body = json.dumps(node, indent=2).encode()
        self.send_response(200 if token == "sekrit-token" else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain({cert:?}, {key:?})
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#,
            cert = cert.to_str().expect("utf-8"),
            key = key.to_str().expect("utf-8"),
        );
        let mut child = Command::new(PY)
            .args(["-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("fake API server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("port");
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("port: {line:?}"));
        Self {
            child: Some(child),
            port,
        }
    }

    /// Stops the server; returns its request log.
    fn stop(&mut self) -> String {
        let mut log = String::new();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if let Some(mut err) = child.stderr.take() {
                let _ = err.read_to_string(&mut log);
            }
        }
        log
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Lines of `text` that are log records in JSON, checked to have exactly
/// the fields --log-format json promises; any other line fails the test
/// unless `plain_ok` lets it through.
fn json_records(text: &str, plain_ok: impl Fn(&str) -> bool) -> Vec<Value> {
    let mut records = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            assert!(plain_ok(line), "not a JSON line: {line:?}\n{text}");
            continue;
        };
        let obj = v
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {line}"));
        let keys: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from(["timestamp", "level", "target", "message"]),
            "{line}"
        );
        assert!(
            ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"]
                .contains(&v["level"].as_str().unwrap_or("")),
            "{line}"
        );
        let ts = v["timestamp"].as_str().expect("timestamp");
        assert!(
            ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
            "timestamp {ts:?} is not RFC 3339 UTC"
        );
        records.push(v);
    }
    records
}

/// Capability names of the unit's CapabilityBoundingSet, as setpriv takes them.
fn unit_capabilities() -> String {
    let text = fs::read_to_string(dist(UNIT)).expect("unit file");
    let caps = unit_value(&unit_entries(&text), "Service", "CapabilityBoundingSet").expect("caps");
    let mut spec = String::from("-all");
    for cap in caps.split_whitespace() {
        spec += &format!(",+{}", cap.trim_start_matches("CAP_").to_lowercase());
    }
    spec
}

#[test]
fn agent_with_the_units_capabilities_logs_json() {
    let lab = Lab::up(&[]);
    let a = lab.endpoint("a", &[]);
    let _b = lab.endpoint("b", &[]);
    let log = std::env::temp_dir().join(format!("{}-pkg-agent.log", lab.id));
    let file = fs::File::create(&log).expect("log file");
    let net = format!("--net=/run/netns/{}", lab.node);
    let bounding = unit_capabilities();
    // The unit's limits: only its capabilities, no new privileges.
    let mut agent = Command::new("nsenter")
        .args([
            net.as_str(),
            "setpriv",
            "--bounding-set",
            &bounding,
            "--inh-caps=-all",
            "--no-new-privs",
            &bin(),
            "agent",
            "--bridge",
            &lab.bridge,
            "--log-format",
            "json",
            "--gc-interval",
            "1",
            "--run-for",
            "4",
        ])
        .stdout(Stdio::piped())
        .stderr(file)
        .spawn()
        .expect("agent");
    thread::sleep(Duration::from_millis(800));
    // New MACs on the fast path: the datapath logs what it learns and the
    // agent forwards it.
    lab.exec_ok(
        &a,
        &["ping", "-c", "2", "-i", "0.2", "-W", "1", "172.17.0.3"],
    );
    let status = agent.wait().expect("agent exit");
    let mut out = String::new();
    agent
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("stdout");
    let text = fs::read_to_string(&log).expect("agent log");
    let _ = fs::remove_file(&log);
    assert!(
        status.success(),
        "agent under the unit's limits: {status}\n{text}"
    );
    assert!(out.is_empty(), "the agent wrote to stdout: {out}");
    // Every line, the agent's own and the datapath's, is a JSON record.
    let records = json_records(&text, |_| false);
    assert!(
        records
            .iter()
            .any(|r| r["message"].as_str().unwrap_or("").contains("NAT gc every")),
        "the agent's own start line is not a JSON record:\n{text}"
    );
    assert!(
        records.iter().any(|r| r["level"] == "INFO"),
        "no info-level JSON record at the agent's default filter:\n{text}"
    );
    assert!(
        records
            .iter()
            .any(|r| r["message"].as_str().unwrap_or("").contains("fdb: learned")),
        "the datapath's lines did not come through as JSON:\n{text}"
    );

    // A failing command ends on one JSON line too, and keeps exit status 2.
    let out = lab.ebridge(&["--log-format", "json", "endpoint", "rm", "nosuch"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let records = json_records(&stderr(&out), |_| false);
    assert_eq!(records.len(), 1, "{}", stderr(&out));
    assert_eq!(records[0]["level"], "ERROR");
    assert!(stdout(&out).is_empty());
}

/// The command line of every live process, to find ones a test started.
fn processes_with(needle: &str) -> Vec<u32> {
    fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(needle)
                })
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn manifest_agent_step_waits_for_the_bridge_and_stops_on_sigterm() {
    let docs = manifest();
    let pod = daemonset(&docs);
    let agent = containers(pod, "containers")
        .into_iter()
        .find(|c| script(c).contains("ebridge agent"))
        .expect("agent container");
    let lab = Lab::new();
    let log = std::env::temp_dir().join(format!("{}-pkg-ds-agent.log", lab.id));
    let file = fs::File::create(&log).expect("log file");
    let bin_dir = ebridge_bin().parent().expect("bin dir").to_path_buf();
    let net = format!("--net=/run/netns/{}", lab.node);
    let mut cmd = Command::new("nsenter");
    cmd.args([net.as_str(), "/bin/sh", "-c", &script(&agent)])
        .env_clear()
        .env(
            "PATH",
            format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin_dir.display()),
        );
    for (k, v) in env_of(&agent) {
        cmd.env(k, v);
    }
    // The lab's bridge stands in for the manifest's.
    cmd.env("BRIDGE", &lab.bridge);
    let mut sh = cmd.stdout(Stdio::null()).stderr(file).spawn().expect("sh");
    let read_log = || fs::read_to_string(&log).unwrap_or_default();
    let agents = || processes_with(&format!("agent --bridge {} ", lab.bridge));

    thread::sleep(Duration::from_millis(2500));
    assert!(
        matches!(sh.try_wait(), Ok(None)),
        "the step ended: {}",
        read_log()
    );
    assert!(
        agents().is_empty(),
        "agent started before the bridge was up"
    );
    lab.ebridge_ok(&["up", "--subnet", "172.17.0.0/16"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !read_log().contains("NAT gc every") && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    let text = read_log();
    assert!(text.contains("NAT gc every"), "agent did not start: {text}");
    assert_eq!(agents().len(), 1, "{text}");
    json_records(&text, |_| false);

    // What the kubelet sends on delete; the shell is the container's PID 1.
    // SAFETY: kill(2) of our own child (nsenter execs sh).
    unsafe { libc::kill(sh.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Ok(Some(status)) = sh.try_wait() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = sh.kill();
            let _ = sh.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let text = read_log();
    let _ = fs::remove_file(&log);
    let status = status.unwrap_or_else(|| panic!("SIGTERM did not stop the step: {text}"));
    assert!(status.success(), "{status}: {text}");
    assert!(
        agents().is_empty(),
        "the agent outlived its container: {text}"
    );
}

#[test]
fn cni_mode_keeps_logs_off_stdout() {
    let lab = Lab::new();
    let netns = container_netns(&lab, "c1");
    let config = json!({
        "cniVersion": "1.0.0",
        "name": format!("{}net", lab.id),
        "type": "ebridge",
        "bridge": lab.bridge,
        "subnet": "172.17.0.0/16",
    });
    let call = |command: &str| -> Output {
        let net = format!("--net=/run/netns/{}", lab.node);
        let mut child = Command::new("nsenter")
            .args([net.as_str(), &bin()])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            // Everything there is to log, to show none of it reaches stdout.
            .env("RUST_LOG", "trace")
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", format!("{}c1", lab.id))
            .env("CNI_NETNS", &netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/usr/lib/cni")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("plugin");
        std::io::Write::write_all(
            &mut child.stdin.take().expect("stdin"),
            config.to_string().as_bytes(),
        )
        .expect("config");
        child.wait_with_output().expect("plugin output")
    };
    let add = call("ADD");
    let result: Value = serde_json::from_str(&stdout(&add)).unwrap_or_else(|e| {
        panic!(
            "ADD stdout is not one JSON document ({e}): {}",
            stdout(&add)
        )
    });
    assert!(add.status.success(), "{result}\n{}", stderr(&add));
    assert!(result["ips"][0]["address"].is_string(), "{result}");
    assert!(
        !stderr(&add).trim().is_empty(),
        "RUST_LOG=trace logged nothing, so this proves nothing"
    );
    let del = call("DEL");
    assert!(del.status.success(), "{}", stderr(&del));
    assert!(
        stdout(&del).trim().is_empty(),
        "DEL stdout: {}",
        stdout(&del)
    );
}
