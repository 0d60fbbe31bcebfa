//! ebridge as podman's CNI plugin (podman 4.3, CNI backend), installed
//! with `ebridge cni install` in a lab's node namespace: published ports
//! from outside, from the node and from another container; masquerade to
//! the outside; the fast path between containers; `--ip`; a bad config
//! failing `podman run` with the plugin's message; `podman rm -f` leaving
//! nothing; 20 containers started at once.
use std::{thread, time::Duration};

use ebridge_tests::{
    lab::{Lab, NODE_UPLINK_IP, OUTSIDE_IP},
    podman::{httpd_script, poll_until, Podman, IMAGE},
    procs::{http_get, ip_bytes, map_dump},
};

/// Installs the plugin into podman's plugin dir and a network into its
/// config dir, as an operator would; returns the network's name.
fn install(lab: &Lab, pm: &Podman, short: &str, extra: &[&str]) -> String {
    let name = pm.name(short);
    let mut args = vec![
        "cni",
        "install",
        "--bin-dir",
        pm.plugin_dir().to_str().expect("utf-8"),
        "--name",
        &name,
    ];
    let conf = pm.conf_dir();
    args.extend(["--conf-dir", conf.to_str().expect("utf-8")]);
    args.extend(extra);
    lab.ebridge_ok(&args);
    name
}

fn endpoint_count(lab: &Lab) -> usize {
    lab.json(&["endpoint", "ls"])
        .as_array()
        .expect("list")
        .len()
}

#[test]
fn podman_containers_on_ebridge() {
    let mut lab = Lab::new().watch_for_leaks();
    let fp = {
        let pm = Podman::new(&lab);
        let net = install(
            &lab,
            &pm,
            "eb",
            &["--bridge", &lab.bridge, "--subnet", "10.89.0.0/24"],
        );
        let web_cmd = httpd_script("hello-from-web");
        pm.run_ok(&[
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            &net,
            "-p",
            "8080:80",
            IMAGE,
            "sh",
            "-c",
            &web_cmd,
        ]);
        let web_ip = pm.ip("web", &net);
        assert!(web_ip.starts_with("10.89.0."), "{web_ip}");
        let list = lab.json(&["endpoint", "ls"]);
        let id = pm.inspect("web")["Id"].as_str().expect("id").to_string();
        assert_eq!(
            list[0]["container_id"],
            id.as_str(),
            "endpoint ls names the container"
        );

        // The published port: from outside, the node's loopback and its
        // address, and another container (hairpin).
        let url = format!("http://{NODE_UPLINK_IP}:8080/");
        let body = poll_until("the port from outside", Duration::from_secs(15), || {
            http_get(&lab.outside, &url)
        });
        assert_eq!(body.trim(), "hello-from-web");
        for node_url in ["http://127.0.0.1:8080/", url.as_str()] {
            let got = http_get(&lab.node, node_url).unwrap_or_default();
            assert_eq!(got.trim(), "hello-from-web", "{node_url} from the node");
        }
        pm.run_ok(&[
            "run",
            "-d",
            "--name",
            "client",
            "--cap-add",
            "NET_RAW",
            "--network",
            &net,
            "--ip",
            "10.89.0.50",
            IMAGE,
            "sleep",
            "300",
        ]);
        assert_eq!(pm.ip("client", &net), "10.89.0.50", "--ip honoured");
        let get = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {NODE_UPLINK_IP} 8080");
        let out = pm.exec_ok("client", &["sh", "-c", &get]);
        assert!(out.contains("hello-from-web"), "hairpin: {out}");

        // Container to container on the fast path.
        let before = lab.packets("redirect-peer");
        pm.exec_ok(
            "client",
            &["ping", "-c", "3", "-i", "0.2", "-W", "2", &web_ip],
        );
        assert!(lab.packets("redirect-peer") >= before + 6);
        // To the outside, masqueraded (the capture checks no leak).
        pm.exec_ok(
            "client",
            &["ping", "-c", "2", "-i", "0.2", "-W", "2", OUTSIDE_IP],
        );
        assert!(lab.packets("snat-out") >= 2);

        // rm -f leaves no endpoint, port, flow or veth.
        let veths_before = lab.exec_ok(&lab.node, &["ip", "-o", "link", "show"]);
        assert!(pm.rm_f("web").status.success());
        assert_eq!(endpoint_count(&lab), 1);
        assert!(map_dump(&lab.bridge, "publish").is_empty(), "port left");
        let web = web_ip.parse::<std::net::Ipv4Addr>().expect("ip").octets();
        let flows: Vec<_> = map_dump(&lab.bridge, "nat")
            .into_iter()
            .filter(|e| {
                [&e["key"]["saddr"], &e["key"]["daddr"], &e["value"]["addr"]]
                    .iter()
                    .any(|v| ip_bytes(v) == web)
            })
            .collect();
        assert!(
            flows.is_empty(),
            "flows of the removed container: {flows:?}"
        );
        let veths_after = lab.exec_ok(&lab.node, &["ip", "-o", "link", "show"]);
        assert_eq!(
            veths_after.lines().count() + 1,
            veths_before.lines().count(),
            "one veth fewer"
        );
        assert!(pm.rm_f("client").status.success());
        assert_eq!(endpoint_count(&lab), 0);
        pm.close()
    };
    fp.assert_gone();
    lab.assert_no_leak();
}

#[test]
fn a_bad_network_config_fails_podman_run_with_the_plugins_message() {
    let lab = Lab::new();
    let fp = {
        let pm = Podman::new(&lab);
        // What `install` would refuse, written by hand.
        let name = pm.name("bad");
        let conflist = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": name,
            "plugins": [{ "type": "ebridge", "bridge": lab.bridge, "mtu": "huge" }],
        });
        install(&lab, &pm, "good", &["--bridge", &lab.bridge]);
        pm.add_network(&conflist);
        let out = pm.run(&[
            "run",
            "-d",
            "--name",
            "x",
            "--network",
            &name,
            IMAGE,
            "sleep",
            "60",
        ]);
        assert_eq!(out.status.code(), Some(126), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("mtu") && err.contains("huge"), "{err}");
        assert_eq!(
            lab.ebridge(&["endpoint", "ls"]).status.code(),
            Some(2),
            "nothing was brought up"
        );
        let _ = pm.rm_f("x");
        pm.close()
    };
    fp.assert_gone();
}

#[test]
fn twenty_podman_containers_start_at_once() {
    let lab = Lab::new();
    let fp = {
        let pm = Podman::new(&lab);
        let net = install(&lab, &pm, "par", &["--bridge", &lab.bridge]);
        thread::scope(|s| {
            for i in 0..20 {
                let (pm, net) = (&pm, &net);
                s.spawn(move || {
                    let name = format!("c{i}");
                    pm.run_ok(&[
                        "run",
                        "-d",
                        "--name",
                        &name,
                        "--network",
                        net,
                        IMAGE,
                        "sleep",
                        "300",
                    ]);
                });
            }
        });
        let mut ips: Vec<String> = (0..20).map(|i| pm.ip(&format!("c{i}"), &net)).collect();
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), 20, "{ips:?}");
        assert_eq!(endpoint_count(&lab), 20);
        for i in 0..20 {
            assert!(pm.rm_f(&format!("c{i}")).status.success());
        }
        assert_eq!(endpoint_count(&lab), 0);
        assert!(map_dump(&lab.bridge, "endpoints").is_empty());
        pm.close()
    };
    fp.assert_gone();
}
