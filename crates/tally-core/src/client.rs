//! The client's address: the socket peer, or — only when the peer is a trusted proxy — the
//! right-most address in X-Forwarded-For that is not itself a trusted proxy.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// Resolves client addresses under a list of trusted proxy networks.
#[derive(Debug, Clone)]
pub struct ClientAddr {
    trusted: Vec<IpNet>,
}

impl ClientAddr {
    pub fn new(trusted: Vec<IpNet>) -> Self {
        Self { trusted }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
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
