//! The churn test's tools: nginx (Debian's nginx-light) as the outside
//! service, as in issue 7, and `bench-load http-churn` as the container's
//! client: what `wrk -t1 -c32 -H 'Connection: close'` does, except that a
//! connection still unfinished after 2 s is counted and replaced — wrk
//! waits forever on connects whose SYNs are dropped, so the very collapse
//! this test is for would hang it. nginx runs as one process (no master,
//! no daemon) so the bench pins it and kills it like any other server.
use std::{net::SocketAddrV4, time::Duration};

use anyhow::{bail, Result};
use serde_json::Value;

use super::{
    measure::{self, Ctx},
    proc::Proc,
    scratch::ScratchFile,
    topology::Topology,
};

/// A running nginx and the files it was started with (removed with it).
pub struct Nginx {
    _proc: Proc,
    _conf: ScratchFile,
    _pid: ScratchFile,
}

/// Starts nginx in `ns` on `bind`, answering every request with a short
/// 200; a request with `Connection: close` is closed by nginx first, as
/// in issue 7 (so TIME_WAIT is on the server, the client's ports free).
pub fn nginx(t: &Topology, ns: &str, bind: SocketAddrV4, cpu: usize) -> Result<Nginx> {
    let pid = ScratchFile::new("nginx-pid", "")?;
    let conf = ScratchFile::new(
        "nginx-conf",
        &format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {};\nerror_log stderr warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  server {{\n    listen {bind} backlog=4096;\n    location / {{ return 200 \"ok\\n\"; }}\n  }}\n}}\n",
            pid.path_str()?
        ),
    )?;
    let proc = Proc::spawn_in(
        ns,
        "nginx",
        "taskset",
        &[
            "-c",
            &cpu.to_string(),
            "nginx",
            "-e",
            "stderr",
            "-c",
            &conf.path_str()?,
        ],
    )?;
    let port = format!(":{}", bind.port());
    for _ in 0..50 {
        let listening = t
            .exec(ns, &["ss", "-Hltn"])
            .is_ok_and(|out| out.lines().any(|l| l.contains(&port)));
        if listening {
            return Ok(Nginx {
                _proc: proc,
                _conf: conf,
                _pid: pid,
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("nginx in {ns} did not listen on {bind} within 5 s")
}

/// Starts `bench-load http-churn` against `http://TO/` in `ns`.
pub fn start_churn(ns: &str, ctx: &Ctx, to: SocketAddrV4, conns: u32, secs: u32) -> Result<Proc> {
    measure::load(
        ns,
        "http-churn",
        ctx,
        ctx.cpus[1],
        &measure::strings(&[
            "http-churn",
            "--to",
            &to.to_string(),
            "--secs",
            &secs.to_string(),
            "--conns",
            &conns.to_string(),
        ]),
    )
}

pub fn finish_churn(p: Proc, secs: u32) -> Result<Value> {
    let out = p.finish(Duration::from_secs(u64::from(secs) + 15))?;
    measure::parse(&out, "http-churn")
}
