//! Cookieless visitor ids.
//!
//! A visitor id is a keyed hash (SipHash-1-3, 128-bit key) of the site, the client address
//! and the User-Agent, keyed with a salt that changes every day (UTC). The salt is random,
//! shared by all beacons through Redis and deleted the day after, so an id cannot be linked
//! to an address or across days, and neither the address nor the User-Agent is stored.

use std::hash::Hasher;
use std::net::IpAddr;

use siphasher::sip::SipHasher13;

/// A day's secret salt.
pub type Salt = [u8; 16];

/// The visitor id of (`site`, `ip`, `user_agent`) under `salt`. Never 0.
pub fn visitor_id(salt: &Salt, site: &str, ip: IpAddr, user_agent: &str) -> u64 {
    let mut h = SipHasher13::new_with_key(salt);
    h.write(site.as_bytes());
    h.write_u8(0xff);
    match ip {
        IpAddr::V4(v4) => h.write(&v4.octets()),
        IpAddr::V6(v6) => h.write(&v6.octets()),
    }
    h.write_u8(0xff);
    h.write(user_agent.as_bytes());
    h.finish().max(1)
}

/// A session (visit) id candidate for a visit that starts at `ts_ms`; Redis keeps the first
/// candidate of a visit, so all events of the visit share it.
pub fn session_candidate(visitor: u64, ts_ms: i64) -> u64 {
    let mut h = SipHasher13::new_with_keys(visitor, ts_ms as u64);
    h.write_u64(visitor);
    h.finish().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_every_input() {
        let salt = [7u8; 16];
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let base = visitor_id(&salt, "demo", ip, "UA");
        assert_eq!(base, visitor_id(&salt, "demo", ip, "UA"));
        assert_ne!(base, visitor_id(&[8u8; 16], "demo", ip, "UA"));
        assert_ne!(base, visitor_id(&salt, "other", ip, "UA"));
        assert_ne!(
            base,
            visitor_id(&salt, "demo", "203.0.113.10".parse().unwrap(), "UA")
        );
        assert_ne!(base, visitor_id(&salt, "demo", ip, "UA2"));
        assert_ne!(session_candidate(base, 1), session_candidate(base, 2));
    }
}
