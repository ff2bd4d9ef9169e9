//! `FCGI_WEB_SERVER_ADDRS`: the web servers allowed to connect over TCP.

use std::net::IpAddr;

/// The allow-list from `FCGI_WEB_SERVER_ADDRS` (comma-separated IP addresses). Without the
/// variable every peer is allowed. Only TCP peers are checked: a Unix socket is guarded by
/// its file permissions (as PHP-FPM does; the spec would refuse them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebServerAddrs {
    allowed: Option<Vec<IpAddr>>,
}

impl WebServerAddrs {
    /// Reads `FCGI_WEB_SERVER_ADDRS` from the environment.
    pub fn from_env() -> Self {
        match std::env::var("FCGI_WEB_SERVER_ADDRS") {
            Ok(list) => Self::parse(&list),
            Err(_) => Self::default(),
        }
    }

    /// Parses a comma-separated list; entries that are not IP addresses are ignored, so a
    /// list with none allows nobody (fail closed).
    pub fn parse(list: &str) -> Self {
        let allowed = list.split(',').filter_map(|a| a.trim().parse().ok()).collect();
        Self { allowed: Some(allowed) }
    }

    /// Whether a TCP peer at `ip` may connect (IPv4-mapped IPv6 peers match IPv4 entries).
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.allowed.as_ref().is_none_or(|list| list.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks() {
        let a = WebServerAddrs::parse("127.0.0.1, 10.0.0.2,bogus,::1");
        assert!(a.allows("127.0.0.1".parse().unwrap()));
        assert!(a.allows("10.0.0.2".parse().unwrap()));
        assert!(a.allows("::ffff:127.0.0.1".parse().unwrap()));
        assert!(a.allows("::1".parse().unwrap()));
        assert!(!a.allows("127.0.0.2".parse().unwrap()));
        assert!(WebServerAddrs::default().allows("8.8.8.8".parse().unwrap()));
        assert!(!WebServerAddrs::parse("").allows("127.0.0.1".parse().unwrap()));
    }
}
