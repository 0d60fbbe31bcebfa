//! Packets for the node itself reach its stack whatever their TTL (BGP
//! between directly connected peers runs with TTL 1); TTL and MTU rules
//! apply only to what ebridge forwards, answered as a router answers: a DF
//! packet too big for a container's link gets fragmentation-needed.
use std::{thread, time::Duration};

use ebridge_tests::{
    lab::{Lab, NODE_UPLINK_IP, SERVER_IP},
    procs::{Agent, Bg, PY},
};

#[test]
fn ping_with_ttl_1_to_the_node_is_answered() {
    let lab = Lab::up(&[]);
    let _agent = Agent::start(&lab, &[]);
    let out = lab.exec_ok(
        &lab.outside,
        &[
            "ping",
            "-c",
            "3",
            "-i",
            "0.2",
            "-t",
            "1",
            "-W",
            "2",
            NODE_UPLINK_IP,
        ],
    );
    assert!(out.contains("3 received"), "{out}");
    assert_eq!(lab.packets("drop-ttl-exceeded"), 0);
}

#[test]
fn tcp_with_ttl_1_to_a_node_service_works() {
    let lab = Lab::up(&[]);
    // A service of the node (say, BIRD's BGP port) on its uplink address.
    let server = format!(
        "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('{NODE_UPLINK_IP}', 1179))\ns.listen(1)\nc, _ = s.accept()\n\
         c.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)\nc.sendall(c.recv(100).upper())\nc.close()\n"
    );
    let _server = Bg::spawn(&lab.node, &[PY, "-c", &server]);
    thread::sleep(Duration::from_millis(400));
    let client = format!(
        "import socket\nc=socket.socket()\nc.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)\nc.settimeout(3)\n\
         c.connect(('{NODE_UPLINK_IP}', 1179))\nc.sendall(b'open')\nprint(c.recv(100).decode())\n"
    );
    let out = lab.exec_ok(&lab.outside, &[PY, "-c", &client]);
    assert_eq!(out.trim(), "OPEN");
    assert_eq!(lab.packets("drop-ttl-exceeded"), 0);
}

#[test]
fn a_df_reply_too_big_for_the_container_teaches_the_sender_its_mtu() {
    let lab = Lab::up(&["--mtu", "1280"]).with_server(1500);
    let c = lab.endpoint("c", &[]);
    let _agent = Agent::start(&lab, &[]);
    // The server answers a small request with a 1400-byte DF datagram,
    // then reports the path MTU its kernel learned for the client.
    // (Python 3.11 lacks the names: IP_MTU_DISCOVER 10, IP_PMTUDISC_DO 2,
    // IP_MTU 14.)
    let server = format!(
        "import socket, time\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.setsockopt(socket.IPPROTO_IP, 10, 2)\n\
         s.bind(('{SERVER_IP}', 7001))\ns.settimeout(10)\nd, a = s.recvfrom(100)\ns.connect(a)\n\
         s.send(b'x' * 1400)\ntime.sleep(1)\nprint(a[0], s.getsockopt(socket.IPPROTO_IP, 14))\n"
    );
    let server = Bg::python(&lab.server(), &server);
    thread::sleep(Duration::from_millis(400));
    let client = format!(
        "import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.settimeout(2)\n\
         s.sendto(b'give me a big one', ('{SERVER_IP}', 7001))\n\
         try:\n    print(len(s.recv(4000)))\nexcept socket.timeout:\n    print('nothing')\n"
    );
    let got = lab.exec_ok(&c, &[PY, "-c", &client]);
    let (ok, out, err) = server.wait_output();
    assert!(ok, "server: {out}{err}");
    // The server saw the node's address (masquerade) and learned 1280.
    assert_eq!(
        out.trim(),
        format!("{NODE_UPLINK_IP} 1280"),
        "client got {got}"
    );
    assert!(lab.packets("icmp-frag-needed") >= 1, "{:?}", lab.stats());
}
