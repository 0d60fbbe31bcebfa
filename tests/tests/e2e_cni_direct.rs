//! The CNI plugin called directly, as a runtime calls it (only the CNI_*
//! variables and PATH in its environment): every command and spec version,
//! every error code, DEL without a namespace and twice and after state is
//! lost, IPAM delegated to host-local, a plugin chained after ebridge, and
//! 20 ADDs and DELs at once.
use std::{collections::HashSet, thread, time::Duration};

use ebridge_tests::{
    cni::{call, call_ok, call_plugin, container_netns, net_config, Call, REFERENCE_PLUGINS},
    lab::{run, run_ok, Lab, NODE_UPLINK_IP, OUTSIDE_IP},
    procs::{map_dump, Bg, PY},
};
use serde_json::{json, Value};

const VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

fn ip_of(result: &Value) -> String {
    result["ips"][0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no address in {result}"))
        .split('/')
        .next()
        .expect("address")
        .to_string()
}

fn netns_name(path: &str) -> &str {
    path.rsplit('/').next().expect("netns name")
}

#[test]
fn version_answers_every_supported_version() {
    let lab = Lab::new();
    for v in VERSIONS {
        // podman's VERSION call: dummy values everywhere else.
        let c = Call {
            container_id: String::new(),
            netns: "dummy".into(),
            ifname: "dummy".into(),
            args: String::new(),
            path: "dummy".into(),
        };
        let a = call_ok(&lab, "VERSION", &c, &json!({ "cniVersion": v }));
        assert_eq!(a["cniVersion"], "1.1.0");
        let listed: Vec<&str> = a["supportedVersions"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(listed, VERSIONS);
    }
}

#[test]
fn add_check_del_in_every_spec_version() {
    let lab = Lab::new();
    let config = |v: &str| {
        net_config(
            &lab,
            v,
            json!({ "subnet": "10.88.0.0/24", "dns": { "nameservers": ["10.88.0.1"] } }),
        )
    };
    let mut results = Vec::new();
    for (i, v) in VERSIONS.iter().enumerate() {
        let netns = container_netns(&lab, &format!("v{i}"));
        let c = Call::new(&format!("ctr-{i}"), &netns);
        let r = call_ok(&lab, "ADD", &c, &config(v));
        assert_eq!(r["cniVersion"], *v);
        let ifaces = r["interfaces"].as_array().expect("interfaces");
        assert_eq!(ifaces.len(), 3, "{r}");
        assert_eq!(ifaces[0]["name"], lab.bridge.as_str());
        assert_eq!(ifaces[2]["name"], "eth0");
        assert_eq!(ifaces[2]["sandbox"], netns.as_str());
        let ip = &r["ips"][0];
        assert_eq!(ip["interface"], 2);
        assert_eq!(ip["gateway"], "10.88.0.1");
        assert_eq!(
            ip["version"].is_string(),
            v.starts_with('0'),
            "legacy layout: {r}"
        );
        assert_eq!(r["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(r["dns"]["nameservers"][0], "10.88.0.1");
        // What the result says is what the container has.
        let addr = ip_of(&r);
        let shown = lab.exec_ok(
            netns_name(&netns),
            &["ip", "-4", "-o", "addr", "show", "eth0"],
        );
        assert!(shown.contains(&format!("{addr}/24")), "{shown}");
        assert!(
            shown.contains("eth0"),
            "the container interface is CNI_IFNAME: {shown}"
        );
        if *v != "0.3.0" && *v != "0.3.1" {
            let mut with_prev = config(v);
            with_prev["prevResult"] = r.clone();
            call_ok(&lab, "CHECK", &c, &with_prev);
        }
        results.push((c, r, netns));
    }
    // The containers reach the gateway, the outside (masqueraded) and each
    // other on the fast path.
    let (first, second) = (&results[0], &results[1]);
    let ns = netns_name(&first.2);
    lab.exec_ok(ns, &["ping", "-c", "1", "-W", "2", "10.88.0.1"]);
    lab.exec_ok(ns, &["ping", "-c", "1", "-W", "2", OUTSIDE_IP]);
    let before = lab.packets("redirect-peer");
    lab.exec_ok(
        ns,
        &["ping", "-c", "3", "-i", "0.2", "-W", "2", &ip_of(&second.1)],
    );
    assert!(lab.packets("redirect-peer") >= before + 6);
    let list = lab.json(&["endpoint", "ls"]);
    assert_eq!(list.as_array().expect("list").len(), VERSIONS.len());
    assert!(list[0]["container_id"]
        .as_str()
        .is_some_and(|id| id.starts_with("ctr-")));

    for (i, (c, _, _)) in results.iter().enumerate() {
        let v = VERSIONS[i];
        let a = call(&lab, "DEL", c, &config(v));
        assert!(a.ok && a.stdout.trim().is_empty(), "DEL: {a:?}");
    }
    assert!(lab
        .json(&["endpoint", "ls"])
        .as_array()
        .expect("list")
        .is_empty());
    assert!(map_dump(&lab.bridge, "endpoints").is_empty());
}

#[test]
fn every_error_is_a_cni_error_object_with_its_code() {
    let lab = Lab::new();
    let netns = container_netns(&lab, "c");
    let c = Call::new("ctr-err", &netns);
    let good = net_config(&lab, "1.0.0", json!({}));

    let mut old = good.clone();
    old["cniVersion"] = json!("0.2.0");
    assert_eq!(call(&lab, "ADD", &c, &old).error_code(), 1);
    let mut check_too_old = good.clone();
    check_too_old["cniVersion"] = json!("0.3.1");
    assert_eq!(call(&lab, "CHECK", &c, &check_too_old).error_code(), 1);
    assert_eq!(
        call(&lab, "STATUS", &c, &good).error_code(),
        1,
        "STATUS needs 1.1.0"
    );

    let mut no_id = c.clone();
    no_id.container_id = String::new();
    let a = call(&lab, "ADD", &no_id, &good);
    assert_eq!(a.error_code(), 4);
    assert!(a.json["details"]
        .as_str()
        .unwrap_or("")
        .contains("CNI_CONTAINERID"));
    let mut no_netns = c.clone();
    no_netns.netns = String::new();
    assert_eq!(call(&lab, "ADD", &no_netns, &good).error_code(), 4);

    let garbage = json!("not an object");
    assert_eq!(call(&lab, "ADD", &c, &garbage).error_code(), 6);

    for (key, value) in [
        ("mtu", json!("big")),
        ("subnet", json!("10.0.0.0/33")),
        ("natPorts", json!("9-1")),
        ("icc", json!("yes")),
    ] {
        let mut bad = good.clone();
        bad[key] = value.clone();
        let a = call(&lab, "ADD", &c, &bad);
        assert_eq!(a.error_code(), 7, "{key}");
        let details = a.json["details"].as_str().unwrap_or("");
        assert!(
            details.contains(key) && details.contains(&value.to_string().replace('"', "")),
            "{key}: {details}"
        );
    }
    let mut check = good.clone();
    check["prevResult"] = json!({ "cniVersion": "1.0.0", "ips": [] });
    // Nothing was made by any of these.
    assert_eq!(
        call(&lab, "CHECK", &c, &check).error_code(),
        101,
        "bridge not up"
    );
    call_ok(
        &lab,
        "ADD",
        &Call::new("other", &container_netns(&lab, "o")),
        &good,
    );
    assert_eq!(
        call(&lab, "CHECK", &c, &check).error_code(),
        3,
        "unknown container"
    );
    assert_eq!(
        lab.json(&["endpoint", "ls"])
            .as_array()
            .expect("list")
            .len(),
        1
    );
}

#[test]
fn requested_addresses_and_macs_are_honoured_or_refused() {
    let lab = Lab::new();
    let config = net_config(&lab, "1.0.0", json!({ "subnet": "10.88.0.0/24" }));
    let mut c = Call::new("ctr-ip", &container_netns(&lab, "a"));
    c.args = "IgnoreUnknown=1;K8S_POD_NAME=a;IP=10.88.0.50;MAC=02:00:00:00:00:50".into();
    let r = call_ok(&lab, "ADD", &c, &config);
    assert_eq!(ip_of(&r), "10.88.0.50");
    assert_eq!(r["interfaces"][2]["mac"], "02:00:00:00:00:50");

    // The capability form.
    let b = Call::new("ctr-rt", &container_netns(&lab, "b"));
    let mut rt = config.clone();
    rt["runtimeConfig"] = json!({ "ips": ["10.88.0.60/24"], "mac": "02:00:00:00:00:60" });
    let r = call_ok(&lab, "ADD", &b, &rt);
    assert_eq!(ip_of(&r), "10.88.0.60");

    for (i, (args, why)) in [
        ("IP=10.88.0.50", "taken"),
        ("IP=10.99.0.5", "outside the subnet"),
        ("IP=10.88.0.1", "the gateway"),
        ("MAC=02:00:00:00:00:50", "MAC taken"),
        ("IP=banana", "not an address"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut d = Call::new("ctr-no", &container_netns(&lab, &format!("n{i}")));
        d.args = args.into();
        let a = call(&lab, "ADD", &d, &config);
        assert_eq!(a.error_code(), 7, "{why}: {a:?}");
    }
    assert_eq!(
        lab.json(&["endpoint", "ls"])
            .as_array()
            .expect("list")
            .len(),
        2
    );
}

#[test]
fn port_mappings_are_published_and_go_with_del() {
    let lab = Lab::new();
    let netns = container_netns(&lab, "web");
    let c = Call::new("ctr-web", &netns);
    let mut config = net_config(
        &lab,
        "1.0.0",
        json!({ "capabilities": { "portMappings": true } }),
    );
    config["runtimeConfig"] = json!({ "portMappings": [
        { "hostPort": 8080, "containerPort": 80, "protocol": "tcp" },
        { "hostPort": 8053, "containerPort": 53, "protocol": "udp", "hostIP": NODE_UPLINK_IP }
    ]});
    call_ok(&lab, "ADD", &c, &config);
    let _web = Bg::spawn(
        netns_name(&netns),
        &[PY, "-m", "http.server", "80", "--directory", "/"],
    );
    thread::sleep(Duration::from_millis(700));
    let get = format!(
        "import urllib.request\nprint(urllib.request.urlopen('http://{NODE_UPLINK_IP}:8080/', timeout=3).status)\n"
    );
    assert_eq!(lab.exec_ok(&lab.outside, &[PY, "-c", &get]).trim(), "200");
    assert_eq!(map_dump(&lab.bridge, "publish").len(), 2);

    call_ok(&lab, "DEL", &c, &config);
    assert!(map_dump(&lab.bridge, "publish").is_empty());
}

#[test]
fn del_succeeds_without_netns_twice_and_after_state_is_lost() {
    let lab = Lab::new();
    let config = net_config(&lab, "1.0.0", json!({}));
    // Nothing was ever made (no datapath either): still success.
    call_ok(&lab, "DEL", &Call::new("never", ""), &config);

    let netns = container_netns(&lab, "a");
    let a = Call::new("ctr-a", &netns);
    call_ok(&lab, "ADD", &a, &config);
    // containerd's DEL: no CNI_NETNS, the namespace already gone.
    run_ok("ip", &["netns", "del", netns_name(&netns)]);
    call_ok(&lab, "DEL", &Call::new("ctr-a", ""), &config);
    call_ok(&lab, "DEL", &Call::new("ctr-a", ""), &config);
    assert!(map_dump(&lab.bridge, "endpoints").is_empty());

    // ebridge's state file lost while the datapath and the veth remain:
    // DEL still finds and removes the attachment.
    let b = Call::new("ctr-b", &container_netns(&lab, "b"));
    let r = call_ok(&lab, "ADD", &b, &config);
    let veth = r["interfaces"][1]["name"]
        .as_str()
        .expect("veth")
        .to_string();
    std::fs::remove_file(format!("/run/ebridge/{}/endpoints.json", lab.bridge))
        .expect("remove state");
    call_ok(&lab, "DEL", &b, &config);
    let links = lab.exec_ok(&lab.node, &["ip", "-o", "link", "show"]);
    assert!(!links.contains(&veth), "{links}");
    assert!(map_dump(&lab.bridge, "endpoints").is_empty());
    assert!(map_dump(&lab.bridge, "endpoint_by_ip").is_empty());

    // A "reboot": datapath and state gone; DEL of an old attachment works.
    lab.ebridge_ok(&["down"]);
    call_ok(&lab, "DEL", &b, &config);
}

#[test]
fn ipam_is_delegated_to_host_local_and_released_by_del() {
    let lab = Lab::new();
    let data = std::env::temp_dir().join(format!("{}-host-local", lab.id));
    let config = net_config(
        &lab,
        "1.0.0",
        json!({ "ipam": {
            "type": "host-local",
            "ranges": [[{ "subnet": "10.77.0.0/24" }]],
            "dataDir": data,
        }}),
    );
    let c = Call::new("ctr-ipam", &container_netns(&lab, "a"));
    let r = call_ok(&lab, "ADD", &c, &config);
    let ip = ip_of(&r);
    assert!(ip.starts_with("10.77.0."), "{r}");
    let lease = data.join(format!("{}net", lab.id)).join(&ip);
    assert!(lease.exists(), "host-local holds {ip}");
    let shown = lab.json(&["show", "config"]);
    assert_eq!(
        shown["subnet"], "10.77.0.0/24",
        "the bridge took host-local's network"
    );
    assert_eq!(shown["gateway"], "10.77.0.1");
    let mut with_prev = config.clone();
    with_prev["prevResult"] = r.clone();
    call_ok(&lab, "CHECK", &c, &with_prev);

    call_ok(&lab, "DEL", &c, &config);
    assert!(!lease.exists(), "DEL released the lease through host-local");
    // A failing ADD gives its lease back: this address is taken by nobody,
    // but the MAC asked for is the bridge's own.
    let mut bad = Call::new("ctr-bad", &container_netns(&lab, "b"));
    // As podman sends it: host-local refuses keys it does not know
    // unless told to ignore them.
    bad.args = "IgnoreUnknown=1;MAC=02:42:0a:4d:00:01".into();
    assert_eq!(call(&lab, "ADD", &bad, &config).error_code(), 7);
    let left: Vec<_> = std::fs::read_dir(data.join(format!("{}net", lab.id)))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.iter().all(|n| !n.to_string_lossy().starts_with("10.")),
        "leases left: {left:?}"
    );
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn ipam_ranges_with_ipv6_make_the_network_dual_stack() {
    let lab = Lab::new();
    let data = std::env::temp_dir().join(format!("{}-host-local6", lab.id));
    let config = net_config(
        &lab,
        "1.0.0",
        json!({ "ipam": {
            "type": "host-local",
            "ranges": [[{ "subnet": "10.78.0.0/24" }], [{ "subnet": "fd00:78::/64" }]],
            "dataDir": data,
        }}),
    );
    let ns = container_netns(&lab, "a");
    let c = Call::new("ctr-ipam6", &ns);
    let r = call_ok(&lab, "ADD", &c, &config);
    let addrs: Vec<&str> = r["ips"]
        .as_array()
        .expect("ips")
        .iter()
        .filter_map(|ip| ip["address"].as_str())
        .collect();
    let v6 = addrs
        .iter()
        .find(|a| a.starts_with("fd00:78::"))
        .unwrap_or_else(|| panic!("no IPv6 address in {r}"))
        .split('/')
        .next()
        .expect("address")
        .to_string();
    assert!(addrs.iter().any(|a| a.starts_with("10.78.0.")), "{r}");
    let shown = lab.json(&["show", "config"]);
    assert_eq!(shown["subnet_v6"], "fd00:78::/64", "{shown}");
    assert_eq!(shown["gateway_v6"], "fd00:78::1", "{shown}");
    // The container has host-local's address and reaches the gateway.
    let name = netns_name(&ns).to_string();
    let have = lab.exec_ok(&name, &["ip", "-6", "addr", "show", "dev", "eth0"]);
    assert!(have.contains(&format!("{v6}/64")), "{have}");
    let ping = lab.exec(&name, &["ping", "-6", "-c", "1", "-W", "2", "fd00:78::1"]);
    assert!(ping.status.success(), "{ping:?}");
    let lease = data.join(format!("{}net", lab.id)).join(&v6);
    assert!(lease.exists(), "host-local holds {v6}");
    call_ok(&lab, "DEL", &c, &config);
    assert!(!lease.exists(), "DEL released the IPv6 lease");
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn a_plugin_chained_after_ebridge_gets_a_valid_prev_result() {
    let lab = Lab::new();
    let netns = container_netns(&lab, "a");
    let c = Call::new("ctr-chain", &netns);
    let config = net_config(&lab, "1.0.0", json!({}));
    let r = call_ok(&lab, "ADD", &c, &config);
    let tuning = json!({
        "cniVersion": "1.0.0",
        "name": format!("{}net", lab.id),
        "type": "tuning",
        "sysctl": { "net.ipv4.conf.eth0.rp_filter": "2" },
        "prevResult": r,
    });
    let t = call_plugin(
        &lab,
        &format!("{REFERENCE_PLUGINS}/tuning"),
        "ADD",
        &c,
        &tuning,
    );
    assert!(t.ok, "tuning: {}{}", t.stdout, t.stderr);
    assert_eq!(
        ip_of(&t.json),
        ip_of(&r),
        "tuning passes ebridge's result on"
    );
    let rp = lab.exec_ok(
        netns_name(&netns),
        &["cat", "/proc/sys/net/ipv4/conf/eth0/rp_filter"],
    );
    assert_eq!(rp.trim(), "2");
}

#[test]
fn twenty_parallel_adds_and_dels() {
    let lab = Lab::new();
    let config = net_config(&lab, "1.0.0", json!({}));
    let calls: Vec<Call> = (0..20)
        .map(|i| {
            Call::new(
                &format!("par-{i}"),
                &container_netns(&lab, &format!("p{i}")),
            )
        })
        .collect();
    // The first of them brings the datapath up; the others wait for it.
    let results: Vec<Value> = thread::scope(|s| {
        let handles: Vec<_> = calls
            .iter()
            .map(|c| s.spawn(|| call_ok(&lab, "ADD", c, &config)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("ADD thread"))
            .collect()
    });
    let ips: HashSet<String> = results.iter().map(ip_of).collect();
    assert_eq!(ips.len(), 20, "distinct addresses: {ips:?}");
    for c in &calls {
        lab.exec_ok(
            netns_name(&c.netns),
            &["ping", "-c", "1", "-W", "2", "172.17.0.1"],
        );
    }
    thread::scope(|s| {
        for c in &calls {
            s.spawn(|| call_ok(&lab, "DEL", c, &config));
        }
    });
    assert!(lab
        .json(&["endpoint", "ls"])
        .as_array()
        .expect("list")
        .is_empty());
    for map in ["endpoints", "endpoint_by_ip", "publish"] {
        assert!(map_dump(&lab.bridge, map).is_empty(), "{map} not empty");
    }
    let links = lab.exec_ok(&lab.node, &["ip", "-o", "link", "show"]);
    let veths: Vec<&str> = links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .filter(|name| name.starts_with("eb") && name.contains('@'))
        .collect();
    assert!(veths.is_empty(), "host veths left: {veths:?}");
}

#[test]
fn gc_removes_attachments_the_runtime_no_longer_lists() {
    let lab = Lab::new();
    let config = net_config(&lab, "1.1.0", json!({}));
    let calls: Vec<Call> = (0..3)
        .map(|i| Call::new(&format!("gc-{i}"), &container_netns(&lab, &format!("g{i}"))))
        .collect();
    for c in &calls {
        call_ok(&lab, "ADD", c, &config);
    }
    // An endpoint made by hand is not the runtime's to collect.
    lab.endpoint("manual", &[]);
    let mut gc = config.clone();
    gc["cni.dev/valid-attachments"] = json!([{ "containerID": "gc-1", "ifname": "eth0" }]);
    call_ok(&lab, "GC", &Call::new("", ""), &gc);
    let list = lab.json(&["endpoint", "ls"]);
    let names: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("gc-1:")));
    assert!(names.iter().any(|n| n.ends_with("-manual")));
    assert_eq!(map_dump(&lab.bridge, "endpoints").len(), 2);
}

#[test]
fn status_says_whether_an_add_can_work() {
    let lab = Lab::new();
    let config = net_config(&lab, "1.1.0", json!({}));
    let none = Call::new("", "");
    call_ok(&lab, "STATUS", &none, &config);
    call_ok(
        &lab,
        "ADD",
        &Call::new("s", &container_netns(&lab, "s")),
        &config,
    );
    call_ok(&lab, "STATUS", &none, &config);
    // Someone deletes the bridge device behind ebridge's back.
    run_ok("ip", &["-n", &lab.node, "link", "del", &lab.bridge]);
    let a = call(&lab, "STATUS", &none, &config);
    assert_eq!(a.error_code(), 50);
    assert!(
        a.json["details"].as_str().unwrap_or("").contains("gone"),
        "{a:?}"
    );
}

#[test]
fn cni_install_writes_the_plugin_and_a_conflist() {
    let lab = Lab::new();
    let dir = std::env::temp_dir().join(format!("{}-install", lab.id));
    let (bin, conf) = (dir.join("bin"), dir.join("net.d"));
    let out = lab.ebridge_ok(&[
        "cni",
        "install",
        "--bin-dir",
        bin.to_str().expect("utf-8"),
        "--conf-dir",
        conf.to_str().expect("utf-8"),
        "--name",
        "mynet",
        "--subnet",
        "10.66.0.0/24",
        "--mtu",
        "1400",
        "--dns",
        "10.66.0.1",
    ]);
    assert!(out.contains("mynet"), "{out}");
    let plugin = bin.join("ebridge");
    let meta = std::fs::metadata(&plugin).expect("plugin installed");
    assert_ne!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111,
        0
    );
    let text = std::fs::read_to_string(conf.join("10-mynet.conflist")).expect("conflist");
    let list: Value = serde_json::from_str(&text).expect("conflist JSON");
    assert_eq!(list["name"], "mynet");
    let p = &list["plugins"][0];
    assert_eq!(
        (p["type"].as_str(), p["subnet"].as_str()),
        (Some("ebridge"), Some("10.66.0.0/24"))
    );
    assert_eq!(p["mtu"], 1400);
    assert_eq!(p["capabilities"]["portMappings"], true);
    // The installed copy answers as a plugin.
    let v = call_plugin(
        &lab,
        plugin.to_str().expect("utf-8"),
        "VERSION",
        &Call::new("", ""),
        &json!({ "cniVersion": "1.0.0" }),
    );
    assert!(v.ok && v.json["supportedVersions"].is_array(), "{v:?}");
    // Bad values are refused before anything is written.
    let out = lab.ebridge(&[
        "cni",
        "install",
        "--bin-dir",
        bin.to_str().expect("utf-8"),
        "--conf-dir",
        conf.to_str().expect("utf-8"),
        "--name",
        "bad/name",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!conf.join("10-bad/name.conflist").exists());
    let _ = run("rm", &["-rf", dir.to_str().expect("utf-8")]);
}
