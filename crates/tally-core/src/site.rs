//! Site identifiers and the Redis partition a site belongs to.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest accepted site identifier.
pub const MAX_SITE_ID_LEN: usize = 64;

/// A validated site identifier: 1–64 characters of `a-z`, `0-9`, `-` and `_`.
///
/// The strict alphabet means a site id can appear in Redis keys, metric labels and URLs
/// without escaping.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SiteId(String);

/// Why a string is not a site id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a site id is 1 to {MAX_SITE_ID_LEN} characters of a-z, 0-9, '-' and '_'")]
pub struct InvalidSiteId;

impl SiteId {
    /// Validates `s` as a site id.
    pub fn parse(s: &str) -> Result<Self, InvalidSiteId> {
        let ok = !s.is_empty()
            && s.len() <= MAX_SITE_ID_LEN
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidSiteId)
        }
    }

    /// The identifier as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The partition this site's keys and events live in, `0..partitions`.
    ///
    /// FNV-1a over the id: stable across releases and platforms, which matters because the
    /// partition is part of every Redis key of the site.
    pub fn partition(&self, partitions: u16) -> u16 {
        let mut hash: u32 = 0x811c_9dc5;
        for b in self.0.bytes() {
            hash ^= u32::from(b);
            hash = hash.wrapping_mul(0x0100_0193);
        }
        (hash % u32::from(partitions.max(1))) as u16
    }
}

impl TryFrom<String> for SiteId {
    type Error = InvalidSiteId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<SiteId> for String {
    fn from(id: SiteId) -> Self {
        id.0
    }
}

impl fmt::Display for SiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `domain` can be a site's domain: a lower-case host name, without scheme, port or
/// path.
pub fn valid_domain(domain: &str) -> bool {
    !domain.is_empty() && !domain.contains(['/', ':', ' ']) && domain == domain.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_ids_accept_only_the_safe_alphabet() {
        assert!(SiteId::parse("demo").is_ok());
        assert!(SiteId::parse("ward-7_news").is_ok());
        for bad in ["", "Demo", "a b", "a:b", "a{b}", "x'--", &"a".repeat(65)] {
            assert_eq!(SiteId::parse(bad), Err(InvalidSiteId), "{bad:?}");
        }
    }

    #[test]
    fn partition_is_stable_and_in_range() {
        let site = SiteId::parse("demo").unwrap();
        // Pinned: changing the hash would move every site's keys.
        assert_eq!((site.partition(4), site.partition(7)), (2, 1));
        assert_eq!(site.partition(1), 0);
        for n in 1..50 {
            assert!(site.partition(n) < n);
        }
        let spread: std::collections::HashSet<u16> = (0..100)
            .map(|i| SiteId::parse(&format!("site-{i}")).unwrap().partition(4))
            .collect();
        assert_eq!(spread.len(), 4, "100 sites should use all 4 partitions");
    }
}
