//! The agent's side of `ebridge monitor`: monitors connect to the agent's
//! abstract socket (the one that makes it the only agent of its bridge) and
//! get the flows each GC pass expired, one JSON object per line. The
//! datapath's own events go from its ring buffer straight to the monitor.
use std::{
    os::{linux::net::SocketAddrExt, unix::net::SocketAddr},
    sync::Arc,
};

use anyhow::{Context as _, Result};
use serde::Serialize;
use tokio::{io::AsyncWriteExt as _, net::UnixListener, sync::broadcast};

use crate::nat::ExpiredFlow;

/// Lines a slow monitor may fall behind by before it is told how many it
/// missed (a pass can expire a whole table's worth).
const BACKLOG: usize = 8192;

/// The abstract socket name of the agent of `bridge`.
pub fn socket_name(bridge: &str) -> String {
    format!("ebridge-agent/{bridge}")
}

pub fn socket_addr(bridge: &str) -> Result<SocketAddr> {
    SocketAddr::from_abstract_name(socket_name(bridge).as_bytes())
        .context("cannot make the agent's socket address")
}

/// One expired flow as monitors receive it.
#[derive(Serialize)]
struct Expiry<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    /// Unix time of the GC pass, in seconds.
    time: f64,
    #[serde(flatten)]
    flow: &'a ExpiredFlow,
}

#[derive(Serialize)]
struct Lost {
    #[serde(rename = "type")]
    kind: &'static str,
    source: &'static str,
    count: u64,
}

#[derive(Clone)]
pub struct Feed {
    tx: broadcast::Sender<Arc<str>>,
}

impl Feed {
    /// Accepts monitors on `listener` from now on.
    pub fn serve(listener: std::os::unix::net::UnixListener) -> Result<Self> {
        listener
            .set_nonblocking(true)
            .context("cannot make the agent's socket non-blocking")?;
        let listener =
            UnixListener::from_std(listener).context("cannot watch the agent's socket")?;
        let (tx, _) = broadcast::channel(BACKLOG);
        let feed = Self { tx };
        let accepting = feed.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(send(stream, accepting.tx.subscribe()));
            }
        });
        Ok(feed)
    }

    /// Tells connected monitors about the flows a pass expired; nothing is
    /// serialised when none is connected.
    pub fn expired(&self, flows: &[ExpiredFlow]) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let time = crate::agent::report::unix_ms() as f64 / 1000.0;
        for flow in flows {
            let line = Expiry {
                kind: "nat-expire",
                time,
                flow,
            };
            if let Ok(json) = serde_json::to_string(&line) {
                let _ = self.tx.send(json.into());
            }
        }
    }
}

/// Writes lines to one monitor until it goes away.
async fn send(mut stream: tokio::net::UnixStream, mut rx: broadcast::Receiver<Arc<str>>) {
    loop {
        let line: Arc<str> = match rx.recv().await {
            Ok(line) => line,
            Err(broadcast::error::RecvError::Lagged(count)) => {
                let lost = Lost {
                    kind: "lost",
                    source: "agent",
                    count,
                };
                match serde_json::to_string(&lost) {
                    Ok(json) => json.into(),
                    Err(_) => continue,
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        if stream.write_all(&buf).await.is_err() {
            return;
        }
    }
}
