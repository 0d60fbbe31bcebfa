//! What is reported: names, units, and which direction is better. Values
//! are kept in base units (packets/s, µs, connections/s, bit/s) and only
//! scaled for the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    UdpPps,
    RttP50,
    RttP99,
    TcpCps,
    TcpBps,
}

impl Metric {
    pub const ALL: [Metric; 5] = [
        Metric::UdpPps,
        Metric::RttP50,
        Metric::RttP99,
        Metric::TcpCps,
        Metric::TcpBps,
    ];

    /// JSON key.
    pub fn key(self) -> &'static str {
        match self {
            Metric::UdpPps => "udp_64b_rate",
            Metric::RttP50 => "udp_rr_p50",
            Metric::RttP99 => "udp_rr_p99",
            Metric::TcpCps => "tcp_conn_rate",
            Metric::TcpBps => "tcp_throughput",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Metric::UdpPps => "UDP 64 B packet rate",
            Metric::RttP50 => "UDP req/resp p50",
            Metric::RttP99 => "UDP req/resp p99",
            Metric::TcpCps => "TCP connections/s",
            Metric::TcpBps => "TCP throughput",
        }
    }

    /// Unit of the stored (JSON) values.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::UdpPps => "packets/s",
            Metric::RttP50 | Metric::RttP99 => "us round trip",
            Metric::TcpCps => "connections/s",
            Metric::TcpBps => "bits/s",
        }
    }

    pub fn table_unit(self) -> &'static str {
        match self {
            Metric::UdpPps => "kpps",
            Metric::RttP50 | Metric::RttP99 => "µs RTT",
            Metric::TcpCps => "conn/s",
            Metric::TcpBps => "Gbit/s",
        }
    }

    pub fn to_table_unit(self, v: f64) -> f64 {
        match self {
            Metric::UdpPps => v / 1e3,
            Metric::TcpBps => v / 1e9,
            _ => v,
        }
    }

    pub fn higher_is_better(self) -> bool {
        !matches!(self, Metric::RttP50 | Metric::RttP99)
    }
}

/// A number with about four significant digits.
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}
