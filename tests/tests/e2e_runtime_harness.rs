//! The runtime harness's own check, with Debian's reference CNI plugins
//! (bridge + host-local + portmap, which do with iptables what ebridge
//! does with eBPF): podman and containerd run containers in a lab's node
//! namespace that get addresses, reach each other and, published, the
//! outside; afterwards nothing of either runtime is left, also when the
//! test body panics.
use std::{panic::AssertUnwindSafe, path::Path, time::Duration};

use ebridge_tests::{
    containerd::Containerd,
    lab::{Lab, NODE_UPLINK_IP},
    podman::{httpd_script, poll_until, Footprint, Podman, IMAGE},
    procs::http_get,
};
use serde_json::{json, Value};

/// The reference bridge with host-local leases in their default place
/// (`/var/lib/cni/networks/<name>`, which the fixtures must remove), NAT
/// for the outside, and portmap for `-p` if asked. `bridge` is the
/// node-side device: one per network.
fn reference_bridge(name: &str, bridge: &str, subnet: &str, portmap: bool) -> Value {
    let mut plugins = vec![json!({
        "type": "bridge",
        "bridge": bridge,
        "isGateway": true,
        "ipMasq": true,
        "hairpinMode": true,
        "ipam": {
            "type": "host-local",
            "routes": [{"dst": "0.0.0.0/0"}],
            "ranges": [[{"subnet": subnet}]]
        }
    })];
    if portmap {
        plugins.push(json!({"type": "portmap", "capabilities": {"portMappings": true}}));
    }
    json!({"cniVersion": "1.0.0", "name": name, "plugins": plugins})
}

/// A busybox HTTP server answering `GET /` with `body`.
fn httpd(body: &str) -> Vec<String> {
    ["sh", "-c", &httpd_script(body)]
        .map(str::to_string)
        .to_vec()
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Drops the lab and checks none of its namespaces is left.
fn drop_lab(lab: Lab) {
    let prefix = format!("{}-", lab.id);
    drop(lab);
    let left: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "lab namespaces left: {left:?}");
}

/// What a podman fixture's footprint must see while its containers run.
const PODMAN_TRACES: &[&str] = &[
    "ebridge-rt/",
    "process ",
    "/var/lib/cni/results/",
    "/var/lib/cni/networks/",
    "/sys/fs/cgroup/",
    "/run/netns/netns-",
];
/// ... and a containerd fixture's (no netns path: ctr uses /proc/PID/ns/net).
const CONTAINERD_TRACES: &[&str] = &[
    "ebridge-rt/",
    "process ",
    "/var/lib/cni/results/",
    "/var/lib/cni/networks/",
    "/sys/fs/cgroup/",
];

/// A footprint whose checks did not see the fixture's traces while they
/// existed would pass afterwards proving nothing.
fn assert_sees(fp: &Footprint, traces: &[&str]) {
    let left = fp.leftovers();
    for t in traces {
        assert!(
            left.iter().any(|l| l.contains(t)),
            "{} footprint misses {t}: {left:#?}",
            fp.fixture
        );
    }
}

fn in_subnet(ip: &str, prefix: &str) {
    assert!(ip.starts_with(prefix), "{ip} is not in {prefix}0/24");
}

#[test]
fn podman_publishes_a_port_to_the_outside() {
    let lab = Lab::new();
    let fp = {
        let pm = Podman::new(&lab);
        let net = pm.add_network(&reference_bridge(
            &pm.name("ref"),
            "cni-ref0",
            "10.89.1.0/24",
            true,
        ));
        let cmd = httpd("hello-from-web");
        let mut run = vec!["run", "-d", "--name", "web", "-p", "8080:80"];
        run.extend(["--network", &net, IMAGE]);
        run.extend(args(&cmd));
        pm.run_ok(&run);
        in_subnet(&pm.ip("web", &net), "10.89.1.");
        let url = format!("http://{NODE_UPLINK_IP}:8080/");
        let body = poll_until(
            "the published port from outside",
            Duration::from_secs(15),
            || http_get(&lab.outside, &url),
        );
        assert_eq!(body.trim(), "hello-from-web");
        let listed = pm.containers();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(
            (listed[0].name.as_str(), listed[0].state.as_str()),
            ("web", "running")
        );
        assert_sees(&pm.footprint(), PODMAN_TRACES);
        pm.close()
    };
    fp.assert_gone();
    drop_lab(lab);
}

#[test]
fn podman_containers_reach_each_other() {
    let lab = Lab::new();
    let fp = {
        let pm = Podman::new(&lab);
        let net = pm.add_network(&reference_bridge(
            &pm.name("ref"),
            "cni-ref0",
            "10.89.2.0/24",
            false,
        ));
        let cmd = httpd("hello-from-a");
        let mut run = vec!["run", "-d", "--name", "a", "--network", &net, IMAGE];
        run.extend(args(&cmd));
        pm.run_ok(&run);
        pm.run_ok(&[
            "run",
            "-d",
            "--name",
            "b",
            "--cap-add",
            "NET_RAW",
            "--network",
            &net,
            IMAGE,
            "sleep",
            "300",
        ]);
        let (a, b) = (pm.ip("a", &net), pm.ip("b", &net));
        in_subnet(&a, "10.89.2.");
        in_subnet(&b, "10.89.2.");
        assert_ne!(a, b);
        pm.exec_ok("b", &["ping", "-c", "1", "-W", "2", &a]);
        let get = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {a} 80");
        poll_until("b fetching a's page", Duration::from_secs(15), || {
            let out = pm.exec("b", &["sh", "-c", &get]);
            String::from_utf8_lossy(&out.stdout)
                .contains("hello-from-a")
                .then_some(())
        });
        // The container sees the address podman reports.
        let shown = pm.exec_ok("b", &["ip", "-4", "-o", "addr", "show", "eth0"]);
        assert!(shown.contains(&format!("inet {b}/24")), "{shown}");
        let out = pm.rm_f("a");
        assert!(out.status.success(), "{out:?}");
        assert_eq!(pm.containers().len(), 1);
        pm.close()
    };
    fp.assert_gone();
    drop_lab(lab);
}

#[test]
fn containerd_containers_ping_each_other() {
    let lab = Lab::new();
    let fp = {
        let ctd = Containerd::new(&lab);
        let net = ctd.add_network(&reference_bridge(
            &ctd.name("ref"),
            "cni-ref0",
            "10.90.1.0/24",
            false,
        ));
        let mut a = ctd.run("a", &["sleep", "300"]);
        let mut b = ctd.run("b", &["sleep", "300"]);
        a.wait_running();
        b.wait_running();
        let (ip_a, ip_b) = (ctd.ip("a"), ctd.ip("b"));
        in_subnet(&ip_a, "10.90.1.");
        in_subnet(&ip_b, "10.90.1.");
        assert_ne!(ip_a, ip_b);
        ctd.exec_ok("a", &["ping", "-c", "1", "-W", "2", &ip_b]);
        ctd.exec_ok("b", &["ping", "-c", "1", "-W", "2", &ip_a]);
        assert_sees(&ctd.footprint(), CONTAINERD_TRACES);
        let cached = format!("/var/lib/cni/results/{net}-{}-a-eth0", ctd.namespace());
        assert!(Path::new(&cached).exists(), "no cached ADD result {cached}");
        let out = a.stop();
        assert_eq!(out.status.code(), Some(137), "{out:?}");
        // ctr's DEL (the only one it makes) removed the cached result.
        assert!(!Path::new(&cached).exists(), "{cached} left after DEL");
        b.stop();
        assert_eq!(
            ctd.containers(),
            Vec::<String>::new(),
            "--rm left containers"
        );
        ctd.close()
    };
    fp.assert_gone();
    drop_lab(lab);
}

#[test]
fn fixtures_clean_up_after_a_panic() {
    let lab = Lab::new();
    let mut footprints: Vec<Footprint> = Vec::new();
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let pm = Podman::new(&lab);
        let net = pm.add_network(&reference_bridge(
            &pm.name("ref"),
            "cni-pm0",
            "10.89.3.0/24",
            true,
        ));
        pm.run_ok(&[
            "run",
            "-d",
            "--name",
            "s",
            "-p",
            "8080:80",
            "--network",
            &net,
            IMAGE,
            "sleep",
            "300",
        ]);
        let ctd = Containerd::new(&lab);
        ctd.add_network(&reference_bridge(
            &ctd.name("ref"),
            "cni-ctd0",
            "10.90.3.0/24",
            false,
        ));
        let mut fg = ctd.run("fg", &["sleep", "300"]);
        fg.wait_running();
        // Detached: ctr never calls DEL, so the cached result stays for
        // the fixture to remove.
        let out = ctd.run_detached("bg", &["sleep", "300"]);
        assert!(out.status.success(), "{out:?}");
        footprints.push(pm.footprint());
        footprints.push(ctd.footprint());
        assert_sees(&footprints[0], PODMAN_TRACES);
        assert_sees(&footprints[1], CONTAINERD_TRACES);
        panic!("deliberate: the fixtures must clean up while unwinding");
    }));
    assert!(result.is_err());
    assert_eq!(footprints.len(), 2);
    for fp in &footprints {
        fp.assert_gone();
    }
    drop_lab(lab);
}

/// A network with room for one container: the second ADD fails (as a
/// plugin under test will, on purpose). podman leaves that container
/// Created, ctr its task CREATED and the container despite --rm; the
/// fixtures must remove both.
#[test]
fn fixtures_clean_up_after_a_failed_add() {
    let lab = Lab::new();
    let one_address = |name: &str, bridge: &str, subnet: &str, ip: &str| {
        let mut conf = reference_bridge(name, bridge, subnet, false);
        conf["plugins"][0]["ipam"]["ranges"][0][0]["rangeStart"] = json!(ip);
        conf["plugins"][0]["ipam"]["ranges"][0][0]["rangeEnd"] = json!(ip);
        conf
    };
    let pm = Podman::new(&lab);
    let net = pm.add_network(&one_address(
        &pm.name("one"),
        "cni-pm0",
        "10.89.4.0/24",
        "10.89.4.10",
    ));
    pm.run_ok(&[
        "run",
        "-d",
        "--name",
        "a",
        "--network",
        &net,
        IMAGE,
        "sleep",
        "300",
    ]);
    let out = pm.run(&[
        "run",
        "-d",
        "--name",
        "b",
        "--network",
        &net,
        IMAGE,
        "sleep",
        "300",
    ]);
    assert_eq!(out.status.code(), Some(126), "{out:?}");
    let states: Vec<(String, String)> = pm
        .containers()
        .into_iter()
        .map(|c| (c.name, c.state))
        .collect();
    assert!(
        states.contains(&("b".into(), "created".into())),
        "{states:?}"
    );

    let ctd = Containerd::new(&lab);
    ctd.add_network(&one_address(
        &ctd.name("one"),
        "cni-ctd0",
        "10.90.4.0/24",
        "10.90.4.10",
    ));
    let mut a = ctd.run("a", &["sleep", "300"]);
    a.wait_running();
    let out = ctd.run_wait("b", &["sleep", "300"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        ctd.containers().contains(&"b".to_string()),
        "ctr removed the container of a failed ADD after all"
    );
    let footprints = [pm.footprint(), ctd.footprint()];
    drop(a);
    drop(ctd);
    drop(pm);
    for fp in &footprints {
        fp.assert_gone();
    }
    drop_lab(lab);
}
