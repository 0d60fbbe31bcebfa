//! A container that forges its source MAC or IP from a raw socket gets its
//! frames dropped and counted, and the victim never sees them.
use ebridge_tests::lab::Lab;

/// Sends `count` crafted UDP frames out of eth0 with scapy (Debian's python3,
/// which has python3-scapy installed by `cargo xtask setup`).
fn send_forged(lab: &Lab, netns: &str, src_mac: &str, src_ip: &str, dst_mac: &str, count: u32) {
    let script = format!(
        "from scapy.all import Ether, IP, UDP, sendp\n\
         sendp(Ether(src='{src_mac}', dst='{dst_mac}')/IP(src='{src_ip}', dst='172.17.0.3')/UDP(sport=1234, dport=7777)/b'forged', iface='eth0', count={count}, verbose=False)\n"
    );
    lab.exec_ok(netns, &["/usr/bin/python3", "-c", &script]);
}

/// UDP datagrams that reached b's stack (delivered or answered with port
/// unreachable): the forged ones would show up here.
fn udp_arrivals(lab: &Lab, netns: &str) -> u64 {
    let snmp = lab.exec_ok(netns, &["cat", "/proc/net/snmp"]);
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (
        udp.next().expect("Udp header"),
        udp.next().expect("Udp values"),
    );
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .filter(|(n, _)| matches!(*n, "InDatagrams" | "NoPorts" | "InErrors"))
        .map(|(_, v)| v.parse::<u64>().expect("counter"))
        .sum()
}

fn learn_macs(lab: &Lab, a: &str) {
    lab.exec_ok(a, &["ping", "-c", "1", "-W", "2", "172.17.0.3"]);
}

#[test]
fn spoofed_source_ip_is_dropped_and_counted() {
    let lab = Lab::up(&[]);
    let a = lab.endpoint("a", &[]);
    let b = lab.endpoint("b", &[]);
    learn_macs(&lab, &a);
    let b_rx = udp_arrivals(&lab, &b);
    let before = lab.packets("drop-spoofed-ip");
    // a's real MAC, somebody else's address.
    send_forged(
        &lab,
        &a,
        "02:42:ac:11:00:02",
        "172.17.0.99",
        "02:42:ac:11:00:03",
        5,
    );
    assert_eq!(lab.packets("drop-spoofed-ip") - before, 5);
    assert_eq!(udp_arrivals(&lab, &b), b_rx, "b received forged datagrams");
}

#[test]
fn spoofed_source_mac_is_dropped_and_counted() {
    let lab = Lab::up(&[]);
    let a = lab.endpoint("a", &[]);
    let b = lab.endpoint("b", &[]);
    learn_macs(&lab, &a);
    let b_rx = udp_arrivals(&lab, &b);
    let before = lab.packets("drop-spoofed-mac");
    send_forged(
        &lab,
        &a,
        "02:42:de:ad:be:ef",
        "172.17.0.2",
        "02:42:ac:11:00:03",
        4,
    );
    assert_eq!(lab.packets("drop-spoofed-mac") - before, 4);
    assert_eq!(udp_arrivals(&lab, &b), b_rx, "b received forged datagrams");
    // The forged MAC never made it into the FDB.
    let macs: Vec<String> = lab
        .json(&["show", "fdb"])
        .as_array()
        .expect("fdb list")
        .iter()
        .map(|e| e["mac"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(!macs.contains(&"02:42:de:ad:be:ef".to_string()), "{macs:?}");
}

#[test]
fn honest_frames_from_a_raw_socket_still_pass() {
    let lab = Lab::up(&[]);
    let a = lab.endpoint("a", &[]);
    let b = lab.endpoint("b", &[]);
    learn_macs(&lab, &a);
    let before = lab.packets("redirect-peer");
    let b_udp = udp_arrivals(&lab, &b);
    send_forged(
        &lab,
        &a,
        "02:42:ac:11:00:02",
        "172.17.0.2",
        "02:42:ac:11:00:03",
        3,
    );
    assert_eq!(udp_arrivals(&lab, &b) - b_udp, 3);
    // Three datagrams there, three port-unreachables back.
    assert!(lab.packets("redirect-peer") - before >= 3);
}
