//! What the tracker sends (`POST /collect`, `GET /collect.gif`) and what the beacon records.
//!
//! [`parse_collect`] turns a request body into a validated [`Hit`]; the beacon then adds what
//! only it knows (visitor id, browser, time) to make an [`Event`], the unit written to the
//! Redis stream and, by the worker, to ClickHouse.

use serde::{Deserialize, Serialize};

use crate::page::{self, MAX_PAGE_LEN};
use crate::site::SiteId;

/// Largest accepted request body.
pub const MAX_BODY: usize = 4096;
/// Longest accepted URL (page, referrer, event target), in bytes.
pub const MAX_URL: usize = 2048;
const MAX_TITLE: usize = 512;
const MAX_SID: usize = 64;
const MAX_WIDTH: u32 = 100_000;
/// Longest `lang` accepted (BCP 47 tags in browsers are far shorter).
const MAX_LANG: usize = 35;
/// Longest custom event name, in characters.
pub const MAX_NAME: usize = 64;
/// Most properties a custom event may carry.
pub const MAX_PROPS: usize = 10;
/// Longest property name, in characters.
pub const MAX_PROP_KEY: usize = 64;
/// Longest property value, in characters.
pub const MAX_PROP_VALUE: usize = 256;

/// The kind of a recorded event. The numbers are the ClickHouse `Enum8` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Pageview,
    Ping,
    Leave,
    /// A filtered crawler hit: recorded for the "bots filtered" figures, never counted as a view.
    Bot,
    /// A page view the applier found to repeat the visitor's last one within
    /// `tracking.repeat_view_window` (a reload): kept for the "repeats" figures and the
    /// visit's length, never counted as a view. The tracker never sends this kind.
    Repeat,
    /// A pixel hit with neither Referer nor Origin: nothing shows it came from a page of the
    /// site (a third-party page can embed the pixel without a referrer). Kept only as a
    /// count, like a crawler hit. The tracker never sends this kind.
    Unverified,
    /// A custom event (`t: "event"`): a download, an outbound link, a button, with a name, an
    /// optional target URL and properties. Never a page view; keeps the visit running.
    Custom,
}

impl EventKind {
    /// The wire name (`pageview`, `ping`, `leave`, `bot`, `repeat`, `unverified`, `event`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pageview => "pageview",
            Self::Ping => "ping",
            Self::Leave => "leave",
            Self::Bot => "bot",
            Self::Repeat => "repeat",
            Self::Unverified => "unverified",
            Self::Custom => "event",
        }
    }

    /// The kind of a ClickHouse `Enum8` value ([`code`](Self::code)).
    pub fn from_code(code: i8) -> Option<Self> {
        [
            Self::Pageview,
            Self::Ping,
            Self::Leave,
            Self::Bot,
            Self::Repeat,
            Self::Unverified,
            Self::Custom,
        ]
        .into_iter()
        .find(|k| k.code() == code)
    }

    /// The ClickHouse `Enum8` value.
    pub fn code(self) -> i8 {
        match self {
            Self::Pageview => 1,
            Self::Ping => 2,
            Self::Leave => 3,
            Self::Bot => 4,
            Self::Repeat => 5,
            Self::Unverified => 6,
            Self::Custom => 7,
        }
    }
}

/// Why a tracking request was refused before any lookup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("the body is not valid JSON: {0}")]
    Json(String),
    #[error("`t` must be pageview, ping, leave or event")]
    UnknownType,
    #[error("`{0}` is required")]
    Missing(&'static str),
    #[error("`{0}` is too long")]
    TooLong(&'static str),
    #[error("`url` must be an absolute http(s) URL")]
    BadUrl,
    #[error("`site` is not a valid site id")]
    BadSite,
    #[error("`w` must be a width between 0 and 100000")]
    BadWidth,
    #[error("`sid` may hold only letters, digits, `-` and `_`")]
    BadSid,
    #[error("`name` must be 1 to 64 characters, none of them control characters")]
    BadName,
    #[error("`target` must be an absolute http(s) URL of at most 2048 bytes")]
    BadTarget,
    #[error("`props` {0}")]
    BadProps(&'static str),
}

/// The JSON body of `POST /collect`, as sent by `t.js`. Also built from the query string of
/// `GET /collect.gif`.
#[derive(Debug, Default, Deserialize)]
pub struct CollectBody {
    pub t: Option<String>,
    pub site: Option<String>,
    pub url: Option<String>,
    pub page: Option<String>,
    pub title: Option<String>,
    #[serde(rename = "ref")]
    pub referrer: Option<String>,
    pub sid: Option<String>,
    pub w: Option<serde_json::Number>,
    /// `navigator.language`.
    pub lang: Option<String>,
    /// A custom event's name.
    pub name: Option<String>,
    /// A custom event's target: the file downloaded, the link followed.
    pub target: Option<String>,
    /// A custom event's properties: names and string values.
    pub props: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A validated tracking request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub kind: EventKind,
    pub site: SiteId,
    /// Host of `url`, lower-cased.
    pub host: String,
    pub page: String,
    pub path: String,
    pub title: String,
    pub referrer_host: String,
    pub utm: page::Utm,
    pub tab: String,
    pub width: u16,
    /// `ll` or `ll-RR`, empty when not given or not a language tag.
    pub language: String,
    /// A custom event's name, target URL (without its fragment) and properties; empty for
    /// every other kind.
    pub name: String,
    pub target: String,
    pub props: Vec<(String, String)>,
}

/// Parses a `POST /collect` body (JSON, sent as `application/json` or `text/plain`).
pub fn parse_collect(body: &[u8]) -> Result<Hit, Malformed> {
    let body: CollectBody =
        serde_json::from_slice(body).map_err(|e| Malformed::Json(e.to_string()))?;
    validate(body)
}

/// Validates the fields of a tracking request (shared by the JSON body and the pixel's query).
pub fn validate(body: CollectBody) -> Result<Hit, Malformed> {
    let kind = match body.t.as_deref() {
        Some("pageview") => EventKind::Pageview,
        Some("ping") => EventKind::Ping,
        Some("leave") => EventKind::Leave,
        Some("event") => EventKind::Custom,
        Some(_) => return Err(Malformed::UnknownType),
        None => return Err(Malformed::Missing("t")),
    };
    let site = body.site.ok_or(Malformed::Missing("site"))?;
    let site = SiteId::parse(&site).map_err(|_| Malformed::BadSite)?;
    let url = body.url.ok_or(Malformed::Missing("url"))?;
    limit(&url, MAX_URL, "url")?;
    let parts = page::split_url(&url).ok_or(Malformed::BadUrl)?;
    let path = page::normalize_path(parts.path);
    let page = match body.page.as_deref() {
        Some(p) => {
            limit(p, MAX_PAGE_LEN, "page")?;
            page::normalize_page_id(p).unwrap_or_else(|| path.clone())
        }
        None => path.clone(),
    };
    let title = body.title.unwrap_or_default();
    limit(&title, MAX_TITLE, "title")?;
    let title: String = title.trim().chars().filter(|c| !c.is_control()).collect();
    let referrer = body.referrer.unwrap_or_default();
    limit(&referrer, MAX_URL, "ref")?;
    let tab = body.sid.unwrap_or_default();
    limit(&tab, MAX_SID, "sid")?;
    if !tab
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Malformed::BadSid);
    }
    let lang = body.lang.unwrap_or_default();
    limit(&lang, MAX_LANG, "lang")?;
    let width = match body.w {
        None => 0,
        Some(n) => match n.as_u64() {
            Some(w) if w <= u64::from(MAX_WIDTH) => w.min(u64::from(u16::MAX)) as u16,
            _ => return Err(Malformed::BadWidth),
        },
    };
    let (name, target, props) = if kind == EventKind::Custom {
        custom(body.name, body.target, body.props)?
    } else {
        Default::default()
    };
    Ok(Hit {
        kind,
        name,
        target,
        props,
        referrer_host: page::referrer_host(&referrer, &parts.host),
        utm: page::utm_from_query(parts.query),
        host: parts.host,
        site,
        page,
        path,
        title,
        tab,
        width,
        language: language_tag(&lang),
    })
}

/// A custom event's target as it is counted: the URL without its fragment (`#page=2` is the
/// same file), trimmed. The API looks counts up under the same key.
pub fn target_key(url: &str) -> &str {
    url.split('#').next().unwrap_or_default().trim()
}

/// A custom event's name, target and properties.
type Custom = (String, String, Vec<(String, String)>);

/// The name, target and properties of a custom event, checked.
fn custom(
    name: Option<String>,
    target: Option<String>,
    props: Option<serde_json::Map<String, serde_json::Value>>,
) -> Result<Custom, Malformed> {
    let name = name.ok_or(Malformed::Missing("name"))?;
    let name = name.trim();
    let length = name.chars().count();
    if length == 0 || length > MAX_NAME || name.chars().any(char::is_control) {
        return Err(Malformed::BadName);
    }
    let target = match target.as_deref().map(str::trim) {
        None | Some("") => String::new(),
        Some(t) => {
            if t.len() > MAX_URL || t.chars().any(char::is_control) || page::split_url(t).is_none()
            {
                return Err(Malformed::BadTarget);
            }
            target_key(t).to_owned()
        }
    };
    let props = props.unwrap_or_default();
    if props.len() > MAX_PROPS {
        return Err(Malformed::BadProps("may hold at most 10 properties"));
    }
    let mut pairs = Vec::with_capacity(props.len());
    for (key, value) in props {
        let key_length = key.chars().count();
        if key_length == 0 || key_length > MAX_PROP_KEY || key.chars().any(char::is_control) {
            return Err(Malformed::BadProps(
                "names must be 1 to 64 characters, none of them control characters",
            ));
        }
        let serde_json::Value::String(value) = value else {
            return Err(Malformed::BadProps("values must be strings"));
        };
        if value.chars().count() > MAX_PROP_VALUE {
            return Err(Malformed::BadProps("values must be at most 256 characters"));
        }
        pairs.push((key, value.chars().filter(|c| !c.is_control()).collect()));
    }
    Ok((name.to_owned(), target, pairs))
}

/// A browser language tag as `ll` or `ll-RR` (primary language lowercased, region
/// uppercased; script and other subtags dropped: `zh-Hans-CN` → `zh-CN`); empty when `tag`
/// does not start with a language.
pub fn language_tag(tag: &str) -> String {
    let mut parts = tag.trim().split(['-', '_']);
    let primary = parts.next().unwrap_or_default();
    if !(2..=3).contains(&primary.len()) || !primary.bytes().all(|b| b.is_ascii_alphabetic()) {
        return String::new();
    }
    let mut out = primary.to_ascii_lowercase();
    let region = parts.find(|p| {
        (p.len() == 2 && p.bytes().all(|b| b.is_ascii_alphabetic()))
            || (p.len() == 3 && p.bytes().all(|b| b.is_ascii_digit()))
    });
    if let Some(region) = region {
        out.push('-');
        out.push_str(&region.to_ascii_uppercase());
    }
    out
}

fn limit(value: &str, max: usize, field: &'static str) -> Result<(), Malformed> {
    if value.len() > max {
        Err(Malformed::TooLong(field))
    } else {
        Ok(())
    }
}

/// One recorded event: what goes into the Redis stream and, from there, a ClickHouse row.
///
/// Serialised as one line of compact JSON in its stream entry (see `tally_redis::wire`);
/// short names keep the stream small, since every pending event sits in Redis memory until
/// the worker acknowledges it. The visit figures are not part of the JSON: the applier
/// finds them and the entry carries them beside the events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "k")]
    pub kind: EventKind,
    #[serde(rename = "s")]
    pub site: String,
    /// Milliseconds since the Unix epoch, set by the beacon.
    #[serde(rename = "ts")]
    pub ts_ms: i64,
    #[serde(rename = "p", default, skip_serializing_if = "String::is_empty")]
    pub page: String,
    #[serde(rename = "pa", default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    #[serde(rename = "ti", default, skip_serializing_if = "String::is_empty")]
    pub title: String,
    #[serde(rename = "r", default, skip_serializing_if = "String::is_empty")]
    pub referrer_host: String,
    #[serde(rename = "us", default, skip_serializing_if = "String::is_empty")]
    pub utm_source: String,
    #[serde(rename = "um", default, skip_serializing_if = "String::is_empty")]
    pub utm_medium: String,
    #[serde(rename = "uc", default, skip_serializing_if = "String::is_empty")]
    pub utm_campaign: String,
    #[serde(rename = "b", default, skip_serializing_if = "String::is_empty")]
    pub browser: String,
    #[serde(rename = "o", default, skip_serializing_if = "String::is_empty")]
    pub os: String,
    #[serde(rename = "d", default, skip_serializing_if = "String::is_empty")]
    pub device: String,
    #[serde(rename = "c", default, skip_serializing_if = "String::is_empty")]
    pub country: String,
    #[serde(rename = "v", default)]
    pub visitor: u64,
    /// Session (visit) id; filled in by the applier.
    #[serde(skip)]
    pub session: u64,
    /// Whether this event started a visit; filled in by the applier.
    #[serde(skip)]
    pub new_visit: bool,
    /// Ordinal of this page view in its visit (1 = the first); 0 for pings and leaves.
    /// Filled in by the applier.
    #[serde(skip)]
    pub visit_seq: u16,
    /// Milliseconds since the visit's previous event; filled in by the applier.
    #[serde(skip)]
    pub gap_ms: u32,
    #[serde(rename = "sid", default, skip_serializing_if = "String::is_empty")]
    pub tab: String,
    #[serde(rename = "w", default)]
    pub width: u16,
    /// The browser's language (`navigator.language`), normalised to `ll` or `ll-RR`.
    #[serde(rename = "la", default, skip_serializing_if = "String::is_empty")]
    pub language: String,
    /// Region (province, state) of the visitor's address, from `geoip.database`.
    #[serde(rename = "re", default, skip_serializing_if = "String::is_empty")]
    pub region: String,
    /// City of the visitor's address, from `geoip.database`.
    #[serde(rename = "ci", default, skip_serializing_if = "String::is_empty")]
    pub city: String,
    /// A custom event's name.
    #[serde(rename = "en", default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// A custom event's target URL.
    #[serde(rename = "et", default, skip_serializing_if = "String::is_empty")]
    pub target: String,
    /// A custom event's properties.
    #[serde(rename = "pr", default, skip_serializing_if = "Vec::is_empty")]
    pub props: Vec<(String, String)>,
}

impl Event {
    /// An event with every optional field empty (kind `Bot`, site empty, time 0).
    pub fn empty() -> Self {
        Self {
            kind: EventKind::Bot,
            site: String::new(),
            ts_ms: 0,
            page: String::new(),
            path: String::new(),
            title: String::new(),
            referrer_host: String::new(),
            utm_source: String::new(),
            utm_medium: String::new(),
            utm_campaign: String::new(),
            browser: String::new(),
            os: String::new(),
            device: String::new(),
            country: String::new(),
            visitor: 0,
            session: 0,
            new_visit: false,
            visit_seq: 0,
            gap_ms: 0,
            tab: String::new(),
            width: 0,
            language: String::new(),
            region: String::new(),
            city: String::new(),
            name: String::new(),
            target: String::new(),
            props: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    #[test]
    fn language_tags_are_normalised() {
        for (tag, want) in [
            ("vi-VN", "vi-VN"),
            ("vi", "vi"),
            ("en_us", "en-US"),
            ("zh-Hans-CN", "zh-CN"),
            ("es-419", "es-419"),
            ("", ""),
            ("x", ""),
            ("1234", ""),
            ("<script>", ""),
        ] {
            assert_eq!(super::language_tag(tag), want, "{tag}");
        }
    }

    use super::*;

    fn ok(body: &str) -> Hit {
        parse_collect(body.as_bytes()).unwrap()
    }

    #[test]
    fn parses_a_full_pageview() {
        let hit = ok(
            r#"{"t":"pageview","site":"demo","url":"https://News.vn/th%E1%BB%9Di-s%E1%BB%B1/?utm_source=zalo#x","title":" Tin  ","ref":"https://www.google.com/","sid":"ab12","w":1280}"#,
        );
        assert_eq!(hit.kind, EventKind::Pageview);
        assert_eq!(hit.site.as_str(), "demo");
        assert_eq!(hit.host, "news.vn");
        assert_eq!(hit.path, "/thời-sự");
        assert_eq!(hit.page, "/thời-sự");
        assert_eq!(hit.title, "Tin");
        assert_eq!(hit.referrer_host, "google.com");
        assert_eq!(hit.utm.source, "zalo");
        assert_eq!(hit.tab, "ab12");
        assert_eq!(hit.width, 1280);
        let hit = ok(r#"{"t":"ping","site":"demo","url":"http://x.vn/a","page":" bai-123 "}"#);
        assert_eq!(
            (hit.kind, hit.page.as_str(), hit.path.as_str()),
            (EventKind::Ping, "bai-123", "/a")
        );
    }

    #[test]
    fn parses_a_custom_event() {
        let hit = ok(
            r#"{"t":"event","site":"demo","url":"https://news.vn/van-ban","name":" download ","target":"https://news.vn/files/qd-12.pdf#page=2","props":{"kind":"pdf","ý":"có"}}"#,
        );
        assert_eq!(hit.kind, EventKind::Custom);
        assert_eq!(hit.name, "download");
        assert_eq!(hit.target, "https://news.vn/files/qd-12.pdf");
        assert_eq!(
            hit.props,
            [("kind".into(), "pdf".into()), ("ý".into(), "có".into())]
        );
        assert_eq!(hit.page, "/van-ban");
        let hit = ok(r#"{"t":"event","site":"demo","url":"https://a/","name":"Đăng ký"}"#);
        assert_eq!((hit.name.as_str(), hit.target.as_str()), ("Đăng ký", ""));
        assert!(hit.props.is_empty());
        // Other kinds ignore the fields.
        let hit = ok(r#"{"t":"pageview","site":"demo","url":"https://a/","name":"x"}"#);
        assert!(hit.name.is_empty());
    }

    #[test]
    fn refuses_malformed_bodies() {
        let cases: &[(&str, Malformed)] = &[
            (
                r#"{"t":"click","site":"demo","url":"https://a/"}"#,
                Malformed::UnknownType,
            ),
            (
                r#"{"t":"bot","site":"demo","url":"https://a/"}"#,
                Malformed::UnknownType,
            ),
            (
                r#"{"site":"demo","url":"https://a/"}"#,
                Malformed::Missing("t"),
            ),
            (
                r#"{"t":"ping","url":"https://a/"}"#,
                Malformed::Missing("site"),
            ),
            (r#"{"t":"ping","site":"demo"}"#, Malformed::Missing("url")),
            (
                r#"{"t":"ping","site":"De mo","url":"https://a/"}"#,
                Malformed::BadSite,
            ),
            (
                r#"{"t":"ping","site":"demo","url":"javascript:alert(1)"}"#,
                Malformed::BadUrl,
            ),
            (
                r#"{"t":"ping","site":"demo","url":"https://a/","w":-1}"#,
                Malformed::BadWidth,
            ),
            (
                r#"{"t":"ping","site":"demo","url":"https://a/","w":1.5}"#,
                Malformed::BadWidth,
            ),
            (
                r#"{"t":"ping","site":"demo","url":"https://a/","sid":"a b"}"#,
                Malformed::BadSid,
            ),
            (
                r#"{"t":"event","site":"demo","url":"https://a/"}"#,
                Malformed::Missing("name"),
            ),
            (
                r#"{"t":"event","site":"demo","url":"https://a/","name":"  "}"#,
                Malformed::BadName,
            ),
            (
                r#"{"t":"event","site":"demo","url":"https://a/","name":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#,
                Malformed::BadName,
            ),
            (
                r#"{"t":"event","site":"demo","url":"https://a/","name":"a\u0007b"}"#,
                Malformed::BadName,
            ),
            (
                r#"{"t":"event","site":"demo","url":"https://a/","name":"download","target":"ftp://a/x.pdf"}"#,
                Malformed::BadTarget,
            ),
            (
                r#"{"t":"event","site":"demo","url":"https://a/","name":"download","target":"javascript:alert(1)"}"#,
                Malformed::BadTarget,
            ),
            (
                r#"{"t":"event","site":"demo","url":"https://a/","name":"x","props":{"a":"1","b":"2","c":"3","d":"4","e":"5","f":"6","g":"7","h":"8","i":"9","j":"10","k":"11"}}"#,
                Malformed::BadProps("may hold at most 10 properties"),
            ),
            (
                r#"{"t":"event","site":"demo","url":"https://a/","name":"x","props":{"n":1}}"#,
                Malformed::BadProps("values must be strings"),
            ),
            (
                r#"{"t":"event","site":"demo","url":"https://a/","name":"x","props":{"":"1"}}"#,
                Malformed::BadProps(
                    "names must be 1 to 64 characters, none of them control characters",
                ),
            ),
            (
                r#"{"t":"event","site":"demo","url":"https://a/","name":"x","props":{"n":"vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv"}}"#,
                Malformed::BadProps("values must be at most 256 characters"),
            ),
        ];
        for (body, want) in cases {
            assert_eq!(parse_collect(body.as_bytes()).unwrap_err(), *want, "{body}");
        }
        let long_title = format!(
            r#"{{"t":"ping","site":"demo","url":"https://a/","title":"{}"}}"#,
            "x".repeat(600)
        );
        assert_eq!(
            parse_collect(long_title.as_bytes()).unwrap_err(),
            Malformed::TooLong("title")
        );
        assert!(matches!(parse_collect(b"{"), Err(Malformed::Json(_))));
        assert!(matches!(
            parse_collect(b"\xff\xfe"),
            Err(Malformed::Json(_))
        ));
        assert!(matches!(
            parse_collect(br#"{"t":1}"#),
            Err(Malformed::Json(_))
        ));
    }

    #[test]
    fn events_round_trip_through_json() {
        let e = Event {
            kind: EventKind::Pageview,
            site: "demo".into(),
            ts_ms: 1_700_000_000_123,
            page: "/a".into(),
            path: "/a".into(),
            title: "T".into(),
            referrer_host: String::new(),
            utm_source: String::new(),
            utm_medium: String::new(),
            utm_campaign: String::new(),
            browser: "Chrome".into(),
            os: String::new(),
            device: "desktop".into(),
            country: String::new(),
            visitor: 42,
            session: 7,
            new_visit: true,
            visit_seq: 1,
            gap_ms: 20,
            tab: "t1".into(),
            width: 800,
            language: "vi-VN".into(),
            region: "Hanoi".into(),
            city: "Hanoi".into(),
            name: "download".into(),
            target: "https://a.vn/f.pdf".into(),
            props: vec![("kind".into(), "pdf".into())],
        };
        let json = serde_json::to_string(&e).unwrap();
        // The visit figures travel beside the JSON (tally_redis::wire::Figures).
        let without_figures = Event {
            session: 0,
            new_visit: false,
            visit_seq: 0,
            gap_ms: 0,
            ..e
        };
        assert_eq!(
            serde_json::from_str::<Event>(&json).unwrap(),
            without_figures
        );
        assert!(json.contains(r#""sid":"t1""#), "{json}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_parser(body in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_collect(&body);
        }

        #[test]
        fn arbitrary_field_values_never_panic(
            t in "\\PC{0,12}|pageview|ping|leave",
            site in "\\PC{0,8}|demo",
            url in "\\PC{0,40}|https?://[a-z.]{1,10}/\\PC{0,30}",
            page in proptest::option::of("\\PC{0,30}"),
            w in proptest::option::of(any::<i64>()),
        ) {
            let body = serde_json::json!({"t": t, "site": site, "url": url, "page": page, "w": w});
            if let Ok(hit) = parse_collect(body.to_string().as_bytes()) {
                prop_assert!(hit.path.starts_with('/'));
                prop_assert!(!hit.page.is_empty());
            }
        }
    }
}
