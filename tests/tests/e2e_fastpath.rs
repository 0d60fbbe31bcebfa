//! Two containers on one bridge: traffic works and really takes the eBPF
//! fast path (redirect_peer), not the Linux bridge.
use std::{thread, time::Duration};

use ebridge_tests::{lab::Lab, procs::tcp_transfer_checked};

#[test]
fn ping_both_ways() {
    let lab = Lab::up(&[]);
    let a = lab.endpoint("a", &[]);
    let b = lab.endpoint("b", &[]);
    let before = lab.packets("redirect-peer");
    lab.exec_ok(
        &a,
        &["ping", "-c", "3", "-i", "0.2", "-W", "2", "172.17.0.3"],
    );
    lab.exec_ok(
        &b,
        &["ping", "-c", "3", "-i", "0.2", "-W", "2", "172.17.0.2"],
    );
    // 12 ICMP packets (6 requests, 6 replies) all redirected; ARP unicast
    // replies may add a few.
    let redirected = lab.packets("redirect-peer") - before;
    assert!(
        redirected >= 11,
        "only {redirected} packets took the fast path"
    );
}

#[test]
fn tcp_100mb_checksum_and_fast_path_counters() {
    let lab = Lab::up(&[]);
    let a = lab.endpoint("a", &[]);
    let b = lab.endpoint("b", &[]);
    lab.exec_ok(&a, &["ping", "-c", "1", "-W", "2", "172.17.0.3"]);

    let host_veths: Vec<String> = lab
        .json(&["endpoint", "ls"])
        .as_array()
        .expect("endpoint list")
        .iter()
        .map(|e| e["host_veth"].as_str().expect("host_veth").to_string())
        .collect();
    let port_tx_before: Vec<u64> = host_veths
        .iter()
        .map(|v| lab.link_packets(&lab.node, v).1)
        .collect();
    let a_tx_before = lab.link_packets(&a, "eth0").1;
    let b_tx_before = lab.link_packets(&b, "eth0").1;
    let redirect_before = lab.packets("redirect-peer");

    tcp_transfer_checked(&lab, &a, &b, "172.17.0.2", 100);

    let sent = (lab.link_packets(&a, "eth0").1 - a_tx_before)
        + (lab.link_packets(&b, "eth0").1 - b_tx_before);
    let redirected = lab.packets("redirect-peer") - redirect_before;
    assert!(sent > 1000, "only {sent} packets were sent for 100 MB");
    // Every frame the containers sent was redirected, give or take the
    // odd ARP or IPv6 multicast that goes to the bridge.
    assert!(
        redirected * 100 >= sent * 95 && redirected <= sent,
        "redirected {redirected} of {sent} frames"
    );
    // The bridge itself forwarded (almost) nothing: its ports' tx stayed flat.
    for (veth, before) in host_veths.iter().zip(port_tx_before) {
        let grew = lab.link_packets(&lab.node, veth).1 - before;
        assert!(
            grew < 20,
            "bridge port {veth} transmitted {grew} frames: the bridge carried traffic"
        );
    }
}

#[test]
fn udp_exchange() {
    let lab = Lab::up(&[]);
    let a = lab.endpoint("a", &[]);
    let b = lab.endpoint("b", &[]);
    let before = lab.packets("redirect-peer");
    // UDP echo server in a; b sends a datagram and must get it back.
    let mut server = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &a,
            "timeout",
            "10",
            "socat",
            "UDP4-RECVFROM:6000,bind=172.17.0.2,fork",
            "EXEC:cat",
        ])
        .spawn()
        .expect("udp server");
    thread::sleep(Duration::from_millis(300));
    let reply = lab.exec_ok(
        &b,
        &[
            "sh",
            "-c",
            "echo hello-udp | timeout 5 socat -t 2 - UDP4:172.17.0.2:6000",
        ],
    );
    // `ip netns exec` became `timeout`, which passes SIGTERM on to socat.
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    let _ = server.wait();
    assert_eq!(reply.trim(), "hello-udp");
    assert!(lab.packets("redirect-peer") - before >= 2);
}

#[test]
fn container_reaches_gateway_through_the_bridge() {
    let lab = Lab::up(&[]);
    let a = lab.endpoint("a", &[]);
    let before = lab.packets("pass-to-host");
    lab.exec_ok(
        &a,
        &["ping", "-c", "2", "-i", "0.2", "-W", "2", "172.17.0.1"],
    );
    assert!(lab.packets("pass-to-host") - before >= 2);
}
