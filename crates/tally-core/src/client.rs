//! The client's address: the socket peer, or — only when the peer is a trusted proxy — the
//! right-most address in X-Forwarded-For that is not itself a trusted proxy. And the
//! client's country, when a trusted proxy names it in a header.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// Resolves client addresses under a list of trusted proxy networks.
#[derive(Debug, Clone)]
pub struct ClientAddr {
    trusted: Vec<IpNet>,
}

/// The network a client address budgets are kept for: the address itself for IPv4, its /64
/// for IPv6 (one subscriber or host usually holds a whole /64, so per-address budgets would
/// give one client 2^64 of them).
pub fn network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
    }
}

impl ClientAddr {
    pub fn new(trusted: Vec<IpNet>) -> Self {
        Self { trusted }
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The country a request from `peer` carries in `header_value`: believed only when the
    /// peer is a trusted proxy, and only as a two-letter code (returned upper-case). "XX",
    /// Cloudflare's "unknown", and anything else (e.g. "T1" for Tor) give `None`.
    pub fn country(&self, peer: SocketAddr, header_value: Option<&[u8]>) -> Option<String> {
        if !self.is_trusted(peer.ip().to_canonical()) {
            return None;
        }
        match header_value? {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                let code = [a.to_ascii_uppercase(), b.to_ascii_uppercase()];
                (code != *b"XX").then(|| String::from_utf8_lossy(&code).into_owned())
            }
            _ => None,
        }
    }

    /// The client address of a request from `peer` whose X-Forwarded-For header values (in
    /// order) are `forwarded_for`.
    pub fn resolve<'a, I>(&self, peer: SocketAddr, forwarded_for: I) -> IpAddr
    where
        I: DoubleEndedIterator<Item = &'a [u8]>,
    {
        let mut ip = peer.ip().to_canonical();
        if !self.is_trusted(ip) {
            return ip;
        }
        // Walk the chain from the nearest hop back; stop at the first untrusted address.
        for value in forwarded_for.rev() {
            let Ok(value) = std::str::from_utf8(value) else {
                return ip;
            };
            for hop in value.rsplit(',') {
                match hop.trim().parse::<IpAddr>() {
                    Ok(hop) => {
                        ip = hop.to_canonical();
                        if !self.is_trusted(ip) {
                            return ip;
                        }
                    }
                    Err(_) => return ip,
                }
            }
        }
        ip
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff<'a>(values: &'a [&'a str]) -> impl DoubleEndedIterator<Item = &'a [u8]> {
        values.iter().map(|v| v.as_bytes())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_country_is_believed_only_from_trusted_proxies_and_only_as_a_code() {
        let c = ClientAddr::new(vec!["10.0.0.0/8".parse().unwrap()]);
        let proxy: SocketAddr = "10.1.2.3:5000".parse().unwrap();
        let stranger: SocketAddr = "198.51.100.7:5000".parse().unwrap();
        let country = |peer, value: &str| c.country(peer, Some(value.as_bytes()));
        assert_eq!(country(proxy, "VN").as_deref(), Some("VN"));
        assert_eq!(country(proxy, "vn").as_deref(), Some("VN"));
        assert_eq!(country(stranger, "VN"), None);
        for junk in ["XX", "xx", "T1", "", "V", "VNM", "Việt", "<b", "V N"] {
            assert_eq!(country(proxy, junk), None, "{junk:?}");
        }
        assert_eq!(c.country(proxy, None), None);
    }

    #[test]
    fn ipv6_clients_are_budgeted_per_64() {
        assert_eq!(network(ip("203.0.113.5")), ip("203.0.113.5"));
        assert_eq!(network(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            network(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            network(ip("2001:db8:1:2::9"))
        );
        assert_ne!(
            network(ip("2001:db8:1:3::1")),
            network(ip("2001:db8:1:2::1"))
        );
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let c = ClientAddr::new(vec!["10.0.0.0/8".parse().unwrap()]);
        let proxy: SocketAddr = "10.1.2.3:5000".parse().unwrap();
        let stranger: SocketAddr = "198.51.100.7:5000".parse().unwrap();
        assert_eq!(
            c.resolve(proxy, xff(&["203.0.113.5, 10.0.0.9"])),
            ip("203.0.113.5")
        );
        assert_eq!(
            c.resolve(stranger, xff(&["203.0.113.5, 10.0.0.9"])),
            ip("198.51.100.7")
        );
        // A client cannot smuggle an address past the nearest untrusted hop.
        assert_eq!(
            c.resolve(proxy, xff(&["1.1.1.1, 203.0.113.5"])),
            ip("203.0.113.5")
        );
        assert_eq!(
            c.resolve(proxy, xff(&["1.1.1.1", "203.0.113.5"])),
            ip("203.0.113.5")
        );
        assert_eq!(c.resolve(proxy, xff(&["garbage"])), ip("10.1.2.3"));
        let v4_mapped: SocketAddr = "[::ffff:198.51.100.7]:1".parse().unwrap();
        assert_eq!(c.resolve(v4_mapped, xff(&[])), ip("198.51.100.7"));
    }
}
