//! URL → page key normalisation, and the parts of a URL the beacon keeps (path, UTM tags,
//! referrer host). Hand-rolled on purpose: only the authority, path and query of absolute
//! http(s) URLs matter here, and this runs for every event.

use std::borrow::Cow;

/// Longest page key, in bytes.
pub const MAX_PAGE_LEN: usize = 512;
/// Longest kept UTM value, in bytes.
pub const MAX_UTM_LEN: usize = 128;

/// The parts of an absolute http(s) URL that Tally uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlParts<'a> {
    /// Lower-cased host without port or user info.
    pub host: String,
    /// Raw path (still percent-encoded), `/` when empty.
    pub path: &'a str,
    /// Raw query without `?`, empty when absent.
    pub query: &'a str,
}

/// Splits an absolute `http://` or `https://` URL. `None` for anything else.
pub fn split_url(url: &str) -> Option<UrlParts<'_>> {
    let rest = strip_prefix_ignore_case(url, "https://")
        .or_else(|| strip_prefix_ignore_case(url, "http://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        &v6[..v6.find(']')?]
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let tail = &rest[end..];
    let tail = tail.split('#').next().unwrap_or_default();
    let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
    Some(UrlParts {
        host: host.to_ascii_lowercase(),
        path: if path.is_empty() { "/" } else { path },
        query,
    })
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Normalises a URL path into a page key: percent-decoded (kept as UTF-8, so Vietnamese paths
/// read naturally), control characters dropped, always starting with `/`, trailing slashes
/// trimmed except for the root, at most [`MAX_PAGE_LEN`] bytes.
///
/// Idempotent: a literal `%` is written as `%25`, so decoding again changes nothing.
pub fn normalize_path(raw: &str) -> String {
    let decoded = percent_decode_keep_percent(raw);
    let mut out = String::with_capacity(decoded.len() + 1);
    if !decoded.starts_with('/') {
        out.push('/');
    }
    out.extend(decoded.chars().filter(|c| !c.is_control()));
    truncate_keeping_escapes(&mut out, MAX_PAGE_LEN);
    let trimmed = out.trim_end_matches('/').len();
    out.truncate(trimmed.max(1));
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Normalises an explicit page id (`data-page`): trimmed, control characters dropped, at most
/// [`MAX_PAGE_LEN`] bytes. `None` when nothing is left.
pub fn normalize_page_id(raw: &str) -> Option<String> {
    let mut out: String = raw.trim().chars().filter(|c| !c.is_control()).collect();
    truncate_at_char(&mut out, MAX_PAGE_LEN);
    let trimmed_len = out.trim_end().len();
    out.truncate(trimmed_len);
    (!out.is_empty()).then_some(out)
}

/// Percent-decodes `raw`; `%25` and stray `%` end up as `%25`, invalid UTF-8 becomes U+FFFD.
fn percent_decode_keep_percent(raw: &str) -> String {
    if !raw.contains('%') {
        return raw.to_owned();
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| {
                let h = std::str::from_utf8(h).ok()?;
                u8::from_str_radix(h, 16).ok()
            });
            match hex {
                Some(b'%') | None => {
                    out.extend_from_slice(b"%25");
                    i += if hex.is_some() { 3 } else { 1 };
                }
                Some(b) => {
                    out.push(b);
                    i += 3;
                }
            }
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    match String::from_utf8_lossy(&out) {
        Cow::Borrowed(s) => s.to_owned(),
        Cow::Owned(s) => s,
    }
}

fn truncate_at_char(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

/// Truncates without leaving half of a `%25` escape behind.
fn truncate_keeping_escapes(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    truncate_at_char(s, max);
    if s.ends_with('%') {
        s.truncate(s.len() - 1);
    } else if s.ends_with("%2") {
        s.truncate(s.len() - 2);
    }
}

/// UTM tags found in a query string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Utm {
    pub source: String,
    pub medium: String,
    pub campaign: String,
}

/// Extracts `utm_source`, `utm_medium` and `utm_campaign` from a raw query string.
pub fn utm_from_query(query: &str) -> Utm {
    let mut utm = Utm::default();
    if !query.contains("utm_") {
        return utm;
    }
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match key {
            "utm_source" => &mut utm.source,
            "utm_medium" => &mut utm.medium,
            "utm_campaign" => &mut utm.campaign,
            _ => continue,
        };
        let plus_as_space = value.replace('+', " ");
        let mut v: String = percent_encoding::percent_decode_str(&plus_as_space)
            .decode_utf8_lossy()
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        truncate_at_char(&mut v, MAX_UTM_LEN);
        *slot = v.trim().to_owned();
    }
    utm
}

/// The referrer's host for statistics: lower-cased, `www.` dropped; empty when the referrer
/// is absent, not http(s), or the page's own host (internal navigation is not a source).
pub fn referrer_host(referrer: &str, page_host: &str) -> String {
    let Some(parts) = split_url(referrer) else {
        return String::new();
    };
    let host = parts.host.strip_prefix("www.").unwrap_or(&parts.host);
    let own = page_host.strip_prefix("www.").unwrap_or(page_host);
    if host == own {
        String::new()
    } else {
        host.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn splits_urls() {
        let p = split_url("HTTPS://User:pw@News.Example.vn:8443/tin-tuc/a?x=1&utm_source=fb#top")
            .unwrap();
        assert_eq!(p.host, "news.example.vn");
        assert_eq!(p.path, "/tin-tuc/a");
        assert_eq!(p.query, "x=1&utm_source=fb");
        let p = split_url("http://[::1]:8080").unwrap();
        assert_eq!((p.host.as_str(), p.path, p.query), ("::1", "/", ""));
        for bad in [
            "ftp://x/",
            "javascript:alert(1)",
            "/relative",
            "http://",
            "http:///x",
            "https://a b/",
        ] {
            assert!(split_url(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn normalises_paths() {
        let cases = [
            ("/", "/"),
            ("", "/"),
            ("//", "/"),
            ("/a/", "/a"),
            ("/a///", "/a"),
            ("a", "/a"),
            (
                "/tin-t%E1%BB%A9c/b%C3%A0i-vi%E1%BA%BFt",
                "/tin-tức/bài-viết",
            ),
            ("/tin-tức/", "/tin-tức"),
            ("/100%25", "/100%25"),
            ("/100%", "/100%25"),
            ("/%zz", "/%25zz"),
            ("/%FF", "/\u{FFFD}"),
            ("/a%0Ab", "/ab"),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_path(raw), want, "{raw:?}");
        }
        assert!(normalize_path(&format!("/{}", "é".repeat(400))).len() <= MAX_PAGE_LEN);
    }

    #[test]
    fn page_ids_are_trimmed() {
        assert_eq!(
            normalize_page_id("  article-42 \n").as_deref(),
            Some("article-42")
        );
        assert_eq!(normalize_page_id(" \t "), None);
    }

    #[test]
    fn extracts_utm_and_referrer() {
        let utm = utm_from_query(
            "a=1&utm_source=Face%20book&utm_medium=social+post&utm_campaign=t%E1%BA%BFt",
        );
        assert_eq!(utm.source, "Face book");
        assert_eq!(utm.medium, "social post");
        assert_eq!(utm.campaign, "tết");
        assert_eq!(utm_from_query("q=1"), Utm::default());
        assert_eq!(
            referrer_host("https://www.Google.com/search?q=x", "news.vn"),
            "google.com"
        );
        assert_eq!(referrer_host("https://news.vn/other", "news.vn"), "");
        assert_eq!(referrer_host("https://www.news.vn/other", "news.vn"), "");
        assert_eq!(referrer_host("android-app://x", "news.vn"), "");
    }

    proptest! {
        #[test]
        fn path_normalisation_is_idempotent(raw in "\\PC{0,80}|(/|%|%2|%25|%C3|%A9|a|é|\\?|#){0,40}") {
            let once = normalize_path(&raw);
            prop_assert_eq!(normalize_path(&once), once.clone());
            prop_assert!(once.starts_with('/'));
            prop_assert!(once.len() <= MAX_PAGE_LEN);
        }

        #[test]
        fn long_paths_stay_idempotent(raw in "(%25|/|é|a){100,400}") {
            let once = normalize_path(&raw);
            prop_assert_eq!(normalize_path(&once), once.clone());
        }

        #[test]
        fn page_id_normalisation_is_idempotent(raw in "\\PC{0,600}") {
            let once = normalize_page_id(&raw);
            if let Some(once) = once {
                prop_assert_eq!(normalize_page_id(&once), Some(once.clone()));
            }
        }

        #[test]
        fn split_url_never_panics(raw in "\\PC{0,200}") {
            let _ = split_url(&raw);
        }
    }
}
