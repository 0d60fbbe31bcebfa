//! Removal checked where it matters, in the datapath's maps (read with
//! bpftool) and on the wire, not in ebridge's state file: `endpoint rm`
//! after the container's namespace died cleans everything and frees the
//! address; `publish rm` makes the port stop answering.
use std::{thread, time::Duration};

use ebridge_tests::{
    lab::{run, run_ok, Lab, NODE_UPLINK_IP, OUTSIDE_IP},
    procs::{ip_bytes, map_dump, Bg, PY},
};

const ADDR: [u8; 4] = [172, 17, 0, 9];

fn names_addr(entry: &serde_json::Value) -> bool {
    let mut found = false;
    for part in [&entry["key"], &entry["value"]] {
        if let Some(obj) = part.as_object() {
            for v in obj.values() {
                if v.as_array().is_some_and(|a| a.len() == 4) && ip_bytes(v) == ADDR {
                    found = true;
                }
            }
        } else if part.as_array().is_some_and(|a| a.len() == 4) && ip_bytes(part) == ADDR {
            found = true;
        }
    }
    found
}

#[test]
fn endpoint_rm_after_the_namespace_died_cleans_the_maps_and_frees_the_address() {
    let lab = Lab::up(&[]);
    let ns = lab.name("x");
    run_ok("ip", &["netns", "add", &ns]);
    let netns = format!("/run/netns/{ns}");
    let c = lab.name("c");
    lab.ebridge_ok(&[
        "endpoint",
        "add",
        &c,
        "--netns",
        &netns,
        "--ip",
        "172.17.0.9",
        "-p",
        "8080:80",
    ]);
    // Traffic: an FDB entry learned, a masqueraded flow made.
    lab.exec_ok(
        &ns,
        &["ping", "-c", "2", "-i", "0.2", "-W", "2", OUTSIDE_IP],
    );
    let veth_index = map_dump(&lab.bridge, "endpoint_by_ip")
        .iter()
        .find(|e| ip_bytes(&e["key"]) == ADDR)
        .and_then(|e| e["value"].as_u64())
        .expect("the endpoint's veth in endpoint_by_ip");
    assert!(
        map_dump(&lab.bridge, "nat").iter().any(names_addr),
        "no flow made"
    );
    assert!(
        map_dump(&lab.bridge, "fdb")
            .iter()
            .any(|e| e["value"]["ifindex"].as_u64() == Some(veth_index)),
        "nothing learned on the port"
    );

    // The container's namespace dies; its veth goes with it.
    run_ok("ip", &["netns", "del", &ns]);
    lab.ebridge_ok(&["endpoint", "rm", &c]);

    for map in ["endpoints", "endpoint_by_ip", "nat", "publish"] {
        let left: Vec<_> = map_dump(&lab.bridge, map)
            .into_iter()
            .filter(names_addr)
            .collect();
        assert!(left.is_empty(), "{map} still names 172.17.0.9: {left:?}");
    }
    assert!(map_dump(&lab.bridge, "publish").is_empty());
    let on_port: Vec<_> = map_dump(&lab.bridge, "fdb")
        .into_iter()
        .filter(|e| e["value"]["ifindex"].as_u64() == Some(veth_index))
        .collect();
    assert!(
        on_port.is_empty(),
        "FDB entries on the dead port: {on_port:?}"
    );
    assert!(lab
        .json(&["endpoint", "ls"])
        .as_array()
        .expect("list")
        .is_empty());

    // The address is free again, and the new endpoint works.
    let d = lab.endpoint("d", &["--ip", "172.17.0.9", "-p", "8080:80"]);
    lab.exec_ok(&d, &["ping", "-c", "1", "-W", "2", "172.17.0.1"]);
}

/// Whether a TCP connection from outside to NODE:`port` is answered.
fn answered(lab: &Lab, port: u16) -> bool {
    let script = format!(
        "import urllib.request\ntry:\n    print(urllib.request.urlopen('http://{NODE_UPLINK_IP}:{port}/', timeout=2).status)\n\
         except Exception as e:\n    print('no', e)\n"
    );
    let out = run("ip", &["netns", "exec", &lab.outside, PY, "-c", &script]);
    String::from_utf8_lossy(&out.stdout).trim() == "200"
}

#[test]
fn publish_rm_makes_the_port_stop_answering() {
    let lab = Lab::up(&[]);
    let c = lab.endpoint("c", &[]);
    let _web = Bg::spawn(&c, &[PY, "-m", "http.server", "80", "--directory", "/"]);
    thread::sleep(Duration::from_millis(700));
    lab.ebridge_ok(&["publish", "add", &c, "8080:80"]);
    assert!(answered(&lab, 8080), "published port does not answer");
    assert_eq!(map_dump(&lab.bridge, "publish").len(), 1);

    lab.ebridge_ok(&["publish", "rm", &c, "8080:80"]);

    assert!(map_dump(&lab.bridge, "publish").is_empty());
    assert!(!answered(&lab, 8080), "the removed port still answers");
}
