//! `ebridge monitor` as an operator uses it: why a packet was dropped (reason,
//! endpoint, 5-tuple), masqueraded flows as they are made and as the agent
//! expires them, hits on published ports; events only while a monitor
//! watches, and within a rate the datapath can afford.
use std::{
    process::Command,
    thread,
    time::{Duration, Instant},
};

use ebridge_tests::{
    lab::{ebridge_bin, Lab, NODE_UPLINK_IP, SERVER_IP},
    procs::{map_dump, send_spoofed, udp_echo, udp_once, Agent, Bg, PY},
};
use serde_json::Value;

/// `ebridge monitor ARGS --json` in the node, stdout kept.
fn monitor(lab: &Lab, args: &[&str]) -> Bg {
    let mut full = vec!["monitor", "--bridge", &lab.bridge, "--json"];
    full.extend(args);
    Bg::ebridge_piped(&lab.node, &full)
}

/// Repeats `poke` every 300 ms until the monitor (started with `--count`)
/// has printed its events and ended; returns its JSON lines. Repeating
/// covers the moment between the monitor's start and its first lease.
fn events_after(mut mon: Bg, secs: u64, mut poke: impl FnMut()) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !mon.exited() && Instant::now() < deadline {
        poke();
        thread::sleep(Duration::from_millis(300));
    }
    let ended = mon.exited();
    let (_, out, err) = mon.wait_output();
    assert!(
        ended,
        "the monitor saw too few events in {secs}s: {out}{err}"
    );
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {e}: {l}")))
        .collect()
}

#[test]
fn a_spoofed_frame_shows_as_a_drop_with_reason_endpoint_and_five_tuple() {
    let lab = Lab::up(&[]);
    let a = lab.endpoint("a", &[]);
    let _b = lab.endpoint("b", &[]);
    let mon = monitor(&lab, &["--type", "drop", "--count", "1"]);
    let events = events_after(mon, 15, || send_spoofed(&lab, &a, 1));
    let ev = &events[0];
    assert_eq!(ev["type"], "drop", "{ev}");
    assert_eq!(ev["reason"], "drop-spoofed-ip", "{ev}");
    assert_eq!(ev["endpoint"], a.as_str(), "{ev}");
    assert_eq!(ev["proto"], "udp", "{ev}");
    assert_eq!(ev["src"], "172.17.0.99", "{ev}");
    assert_eq!(ev["sport"], 1234, "{ev}");
    assert_eq!(ev["dst"], "172.17.0.3", "{ev}");
    assert_eq!(ev["dport"], 7777, "{ev}");
    assert!(ev["time"].as_f64().is_some_and(|t| t > 1.7e9), "{ev}");
}

#[test]
fn a_masqueraded_flow_shows_when_made_and_when_the_agent_expires_it() {
    let lab = Lab::up(&[]).with_server(1500);
    let _agent = Agent::start(
        &lab,
        &[
            "--gc-interval",
            "1",
            "--udp-timeout",
            "2",
            "--udp-timeout-stream",
            "2",
        ],
    );
    let c = lab.endpoint("c", &[]);
    let _echo = udp_echo(&lab, 7000);
    let mon = monitor(&lab, &["--type", "nat,expire", "--count", "2"]);
    // The monitor connects to the agent as it starts; the flow comes after.
    thread::sleep(Duration::from_millis(700));
    udp_once(&lab, &c, 41000, 7000);
    let events = events_after(mon, 20, || {});
    let made = events
        .iter()
        .find(|e| e["type"] == "nat-new")
        .unwrap_or_else(|| panic!("no nat-new event: {events:?}"));
    assert_eq!(made["endpoint"], c.as_str(), "{made}");
    assert_eq!(made["proto"], "udp", "{made}");
    assert_eq!(made["src"], "172.17.0.2", "{made}");
    assert_eq!(made["sport"], 41000, "{made}");
    assert_eq!(made["dst"], SERVER_IP, "{made}");
    assert_eq!(made["dport"], 7000, "{made}");
    assert_eq!(made["nat_addr"], NODE_UPLINK_IP, "{made}");
    let port = made["nat_port"].as_u64().expect("nat_port");
    assert!((1024..=65535).contains(&port), "{made}");

    let gone = events
        .iter()
        .find(|e| e["type"] == "nat-expire")
        .unwrap_or_else(|| panic!("no nat-expire event: {events:?}"));
    assert_eq!(gone["owner"], "container", "{gone}");
    assert_eq!(gone["src"], "172.17.0.2", "{gone}");
    assert_eq!(gone["sport"], 41000, "{gone}");
    assert_eq!(gone["dst"], SERVER_IP, "{gone}");
    assert_eq!(gone["nat_src"], NODE_UPLINK_IP, "{gone}");
    assert_eq!(gone["nat_sport"], port, "{gone}");
}

#[test]
fn a_published_port_hit_shows_client_and_target() {
    let lab = Lab::up(&[]);
    let web = lab.endpoint("web", &["-p", "5353:53/udp"]);
    let mon = monitor(&lab, &["--type", "publish", "--count", "1"]);
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind(('0.0.0.0', 42000))\ns.sendto(b'q', ('{NODE_UPLINK_IP}', 5353))\n"
    );
    let events = events_after(mon, 15, || {
        lab.exec_ok(&lab.outside, &[PY, "-c", &script]);
    });
    let ev = &events[0];
    assert_eq!(ev["type"], "publish", "{ev}");
    assert_eq!(ev["proto"], "udp", "{ev}");
    assert_eq!(ev["dst"], NODE_UPLINK_IP, "{ev}");
    assert_eq!(ev["dport"], 5353, "{ev}");
    assert_eq!(ev["sport"], 42000, "{ev}");
    assert_eq!(ev["nat_addr"], "172.17.0.2", "{ev}");
    assert_eq!(ev["nat_port"], 53, "{ev}");
    assert_eq!(ev["endpoint"], web.as_str(), "{ev}");
}

/// The per-CPU budget state, as bpftool reads it: (window, used) per CPU.
fn budget(lab: &Lab) -> Vec<(u64, u64)> {
    let dump = map_dump(&lab.bridge, "monitor_budget");
    dump[0]["values"]
        .as_array()
        .expect("per-CPU values")
        .iter()
        .map(|v| {
            (
                v["value"]["window_ns"].as_u64().expect("window_ns"),
                v["value"]["used"].as_u64().expect("used"),
            )
        })
        .collect()
}

/// Packets dropped for any reason so far.
fn all_drops(lab: &Lab) -> u64 {
    lab.stats()
        .iter()
        .filter(|(reason, _)| reason.starts_with("drop-"))
        .map(|(_, c)| c.0)
        .sum()
}

#[test]
fn no_monitor_no_events_and_a_storm_is_rate_limited() {
    let lab = Lab::up(&[]);
    let a = lab.endpoint("a", &[]);
    let _b = lab.endpoint("b", &[]);
    // Nobody watching: drops are counted but the event path is not entered.
    send_spoofed(&lab, &a, 5);
    assert!(
        budget(&lab).iter().all(|&(w, u)| w == 0 && u == 0),
        "events were admitted without a monitor: {:?}",
        budget(&lab)
    );

    // A storm of 20000 spoofed frames (a raw socket: scapy is too slow to
    // outrun the budget) while a monitor watches.
    let all_drops_before = all_drops(&lab);
    let out = std::env::temp_dir().join(format!("{}-monitor.jsonl", lab.id));
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{}", lab.node))
        .arg(ebridge_bin())
        .args([
            "monitor",
            "--bridge",
            &lab.bridge,
            "--json",
            "--type",
            "drop",
        ])
        .stdout(std::fs::File::create(&out).expect("monitor output file"));
    let mon = Bg::spawn_with(cmd);
    thread::sleep(Duration::from_millis(800));
    let storm = "import socket\n\
        from scapy.all import Ether, IP, UDP, get_if_hwaddr, raw\n\
        f=raw(Ether(src=get_if_hwaddr('eth0'), dst='ff:ff:ff:ff:ff:ff')/IP(src='172.17.0.99', dst='172.17.0.3')/UDP(sport=1, dport=2))\n\
        s=socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\ns.bind(('eth0', 0))\n\
        for _ in range(20000): s.send(f)\n";
    let before = lab.packets("drop-spoofed-ip");
    let started = Instant::now();
    lab.exec_ok(&a, &[PY, "-c", storm]);
    let storm_secs = started.elapsed().as_secs_f64();
    assert_eq!(lab.packets("drop-spoofed-ip") - before, 20000);
    // The monitor reports the loss each second.
    thread::sleep(Duration::from_millis(2500));
    drop(mon);
    let text = std::fs::read_to_string(&out).expect("monitor output");
    let _ = std::fs::remove_file(&out);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {e}: {l}")))
        .collect();
    let drops = lines.iter().filter(|l| l["type"] == "drop").count() as f64;
    let spoofed = lines
        .iter()
        .filter(|l| l["type"] == "drop" && l["src"] == "172.17.0.99")
        .count() as u64;
    let lost: u64 = lines
        .iter()
        .filter(|l| l["type"] == "lost" && l["source"] == "datapath")
        .map(|l| l["count"].as_u64().expect("count"))
        .sum();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    // At most 2000 per CPU per second window the storm touched.
    let bound = 2000.0 * cpus * (storm_secs.ceil() + 1.0);
    assert!(drops >= 1.0, "no drop events during the storm");
    assert!(
        drops <= bound,
        "{drops} events in {storm_secs:.1}s exceed the budget ({bound})"
    );
    // Every drop is either shown or counted as lost (other drops, say of
    // a stray IPv6 frame, may be among them).
    assert!(
        spoofed + lost >= 20000,
        "{spoofed} storm drops shown + {lost} lost < 20000 sent"
    );
    let dropped = all_drops(&lab) - all_drops_before;
    assert!(
        drops as u64 + lost <= dropped,
        "{drops} shown + {lost} lost > {dropped} dropped"
    );

    // The lease runs out 3 s after the monitor's last renewal: nothing is
    // admitted after that.
    thread::sleep(Duration::from_millis(3500));
    let settled = budget(&lab);
    send_spoofed(&lab, &a, 3);
    assert_eq!(
        budget(&lab),
        settled,
        "events still admitted after the monitor left"
    );
}

#[test]
fn expired_flows_need_the_agent_and_say_so() {
    let lab = Lab::up(&[]);
    let out = lab.ebridge(&["monitor", "--type", "expire"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no ebridge agent runs for bridge") && err.contains("ebridge agent --bridge"),
        "{err}"
    );
    let out = lab.ebridge(&["monitor", "--type", "bogus"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bogus") && err.contains("drop"), "{err}");
}
