//! ebridge as containerd's CNI plugin (`ctr run --cni`, containerd 1.6), a
//! runtime with its own call pattern: no VERSION, no runtimeConfig, and a
//! DEL with an empty CNI_NETNS once the task has exited. Two containers get
//! addresses, reach each other on the fast path and the outside
//! masqueraded, and are gone from `endpoint ls` after they exit.
use ebridge_tests::{
    containerd::Containerd,
    lab::{Lab, OUTSIDE_IP},
    procs::map_dump,
};

fn container_ids(lab: &Lab) -> Vec<String> {
    lab.json(&["endpoint", "ls"])
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["container_id"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn containerd_containers_on_ebridge() {
    let mut lab = Lab::new().watch_for_leaks();
    let fp = {
        let ctd = Containerd::new(&lab);
        let name = ctd.name("eb");
        lab.ebridge_ok(&[
            "cni",
            "install",
            "--bin-dir",
            ctd.plugin_dir().to_str().expect("utf-8"),
            "--conf-dir",
            ctd.conf_dir().to_str().expect("utf-8"),
            "--name",
            &name,
            "--bridge",
            &lab.bridge,
            "--subnet",
            "10.90.0.0/24",
        ]);
        let mut a = ctd.run("a", &["sleep", "300"]);
        let mut b = ctd.run("b", &["sleep", "300"]);
        a.wait_running();
        b.wait_running();
        let (ip_a, ip_b) = (ctd.ip("a"), ctd.ip("b"));
        assert!(ip_a.starts_with("10.90.0.") && ip_b.starts_with("10.90.0."));
        assert_ne!(ip_a, ip_b);
        let mut ids = container_ids(&lab);
        ids.sort();
        let ns = ctd.namespace();
        assert_eq!(ids, vec![format!("{ns}-a"), format!("{ns}-b")]);

        let before = lab.packets("redirect-peer");
        ctd.exec_ok("a", &["ping", "-c", "3", "-i", "0.2", "-W", "2", &ip_b]);
        assert!(
            lab.packets("redirect-peer") >= before + 6,
            "not on the fast path"
        );
        ctd.exec_ok(
            "b",
            &["ping", "-c", "2", "-i", "0.2", "-W", "2", OUTSIDE_IP],
        );
        assert!(lab.packets("snat-out") >= 2);

        // The task exits; ctr's DEL (no netns) removes the endpoint.
        let out = a.stop();
        assert_eq!(out.status.code(), Some(137), "{out:?}");
        assert_eq!(container_ids(&lab), vec![format!("{ns}-b")]);
        b.stop();
        assert!(container_ids(&lab).is_empty());
        assert!(map_dump(&lab.bridge, "endpoints").is_empty());
        ctd.close()
    };
    fp.assert_gone();
    lab.assert_no_leak();
}
