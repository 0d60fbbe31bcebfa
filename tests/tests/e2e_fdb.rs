//! The FDB: entries appear with their age, and an entry older than the
//! ageing time is shown as expired and no longer used by the fast path.
use std::{thread, time::Duration};

use ebridge_tests::lab::Lab;

fn entry(lab: &Lab, mac: &str) -> serde_json::Value {
    lab.json(&["show", "fdb"])
        .as_array()
        .expect("fdb list")
        .iter()
        .find(|e| e["mac"] == mac)
        .cloned()
        .unwrap_or_else(|| panic!("no fdb entry for {mac}"))
}

#[test]
fn entries_show_port_local_flag_and_age() {
    let lab = Lab::up(&[]);
    let a = lab.endpoint("a", &[]);
    let _b = lab.endpoint("b", &[]);
    lab.exec_ok(&a, &["ping", "-c", "1", "-W", "2", "172.17.0.3"]);
    let veth_a = lab.json(&["endpoint", "ls"])[0]["host_veth"]
        .as_str()
        .expect("veth")
        .to_string();

    let learned = entry(&lab, "02:42:ac:11:00:02");
    assert_eq!(learned["port"], veth_a.as_str());
    assert_eq!(learned["local"], false);
    assert_eq!(learned["expired"], false);
    let age = learned["age_secs"].as_f64().expect("age");
    assert!((0.0..5.0).contains(&age), "age {age}");

    // The gateway's MAC is the bridge's own: local, never ages.
    let gw = entry(&lab, "02:42:ac:11:00:01");
    assert_eq!(gw["port"], lab.bridge.as_str());
    assert_eq!(gw["local"], true);

    let table = lab.ebridge_ok(&["show", "fdb"]);
    assert!(
        table.contains("is local?") && table.contains("ageing timer"),
        "{table}"
    );
}

#[test]
fn expired_entry_is_not_used() {
    let lab = Lab::up(&["--fdb-ageing", "2"]);
    let a = lab.endpoint("a", &[]);
    let b = lab.endpoint("b", &[]);
    lab.exec_ok(&a, &["ping", "-c", "1", "-W", "2", "172.17.0.3"]);
    assert_eq!(entry(&lab, "02:42:ac:11:00:02")["expired"], false);

    thread::sleep(Duration::from_millis(3200));
    assert_eq!(entry(&lab, "02:42:ac:11:00:02")["expired"], true);
    assert!(lab.ebridge_ok(&["show", "fdb"]).contains("expired"));

    // b still has a's MAC in its ARP cache: its next frame to a finds an
    // expired entry, goes to the bridge instead, and still arrives.
    let expired_before = lab.packets("pass-fdb-expired");
    let redirect_before = lab.packets("redirect-peer");
    lab.exec_ok(&b, &["ping", "-c", "1", "-W", "2", "172.17.0.2"]);
    assert!(lab.packets("pass-fdb-expired") > expired_before);
    // a's reply re-learned a: fresh again.
    assert_eq!(entry(&lab, "02:42:ac:11:00:02")["expired"], false);
    // The request went the slow way; only the reply may have been redirected.
    assert!(lab.packets("redirect-peer") - redirect_before <= 2);
}
