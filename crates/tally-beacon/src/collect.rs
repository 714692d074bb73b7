//! `POST /collect` and `GET /collect.gif`: the contract's status codes, checked in this
//! order — 413 too large, 400 malformed, 404 unknown site, 403 origin not allowed, 429 rate
//! limited, then: prefetches ignored (204), crawlers recorded as bots (204, not counted),
//! pixel hits with neither Referer nor Origin recorded as unverified (200, not counted),
//! everything else queued (204), or 503 when the buffer is full.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use axum::{
    body::Body,
    extract::{ConnectInfo, Query, State as AxumState},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, NaiveDate, Utc};
use metrics::counter;
use tally_core::{
    Event, EventKind,
    event::{self, CollectBody, Hit, MAX_BODY},
    page, visitor,
};
use tally_redis::TrackedEvent;

use crate::{ApiError, State, agent::Agent, batcher::SubmitError};

/// `POST /collect` (JSON body, sent as `application/json` or `text/plain` by sendBeacon).
pub(crate) async fn post_collect(
    AxumState(state): AxumState<Arc<State>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<NoContent, ApiError> {
    let result = async {
        // Read at most one byte past the limit: a huge body is refused without being read.
        let body = axum::body::to_bytes(body, MAX_BODY + 1)
            .await
            .map_err(|_| ApiError::TooLarge)?;
        if body.len() > MAX_BODY {
            return Err(ApiError::TooLarge);
        }
        let hit = event::parse_collect(&body).map_err(|e| ApiError::Malformed(e.to_string()))?;
        accept(&state, hit, peer, &headers, Endpoint::Collect).await
    }
    .await;
    count_outcome(result)
}

/// The transparent 1×1 GIF of the pixel endpoint.
const GIF: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";

/// `GET /collect.gif?site=…&url=…&page=…&ref=…`: the no-JS pixel. Same rules as
/// `/collect`; always a GIF body, the status tells the outcome, never cached.
pub(crate) async fn pixel(
    AxumState(state): AxumState<Arc<State>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let result = async {
        let Query(mut q) = query.map_err(|e| ApiError::Malformed(e.body_text()))?;
        if q.values().map(String::len).sum::<usize>() > MAX_BODY {
            return Err(ApiError::TooLarge);
        }
        let body = CollectBody {
            t: Some(q.remove("t").unwrap_or_else(|| "pageview".to_owned())),
            site: q.remove("site"),
            url: q.remove("url"),
            page: q.remove("page"),
            title: q.remove("title"),
            referrer: q.remove("ref"),
            sid: None,
            w: None,
            lang: None,
            name: q.remove("name"),
            target: q.remove("target"),
            props: None,
        };
        let hit = event::validate(body).map_err(|e| ApiError::Malformed(e.to_string()))?;
        accept(&state, hit, peer, &headers, Endpoint::Pixel).await
    }
    .await;
    let status = match count_outcome(result) {
        Ok(NoContent) => StatusCode::OK,
        Err(e) => e.status(),
    };
    (
        status,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/gif")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        GIF,
    )
        .into_response()
}

fn count_outcome(result: Result<NoContent, ApiError>) -> Result<NoContent, ApiError> {
    if let Err(e) = &result {
        counter!("tally_beacon_rejected_total", "reason" => e.code()).increment(1);
    }
    result
}

/// Which endpoint a hit came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    /// `POST /collect`: browsers send `Origin` with every POST, so the origin rule holds.
    Collect,
    /// `GET /collect.gif`: any page can embed it, with `referrerpolicy="no-referrer"`.
    Pixel,
}

/// Applies the site, origin, rate and bot rules to a parsed hit and queues it.
async fn accept(
    state: &State,
    hit: Hit,
    peer: SocketAddr,
    headers: &HeaderMap,
    endpoint: Endpoint,
) -> Result<NoContent, ApiError> {
    let site = state
        .directory
        .get(&hit.site)
        .ok_or(ApiError::UnknownSite)?;
    let site = &site.settings;
    if !origin_allowed(headers, &hit.host, &site.domains) {
        return Err(ApiError::OriginNotAllowed);
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.as_bytes());
    let ip = state.client.resolve(peer, forwarded);
    // One budget per IPv4 address and per IPv6 /64 (a host holds a whole /64), and a smaller
    // one for the page views of each page.
    let network = tally_core::client::network(ip);
    if let Some(limiter) = &state.limiter
        && limiter.check_key(&network).is_err()
    {
        return Err(ApiError::RateLimited);
    }
    if hit.kind == EventKind::Pageview
        && let Some(limiter) = &state.page_limiter
        && limiter.check_key(&(network, page_hash(&hit))).is_err()
    {
        return Err(ApiError::RateLimited);
    }
    if is_prefetch(headers) {
        counter!("tally_beacon_ignored_total", "reason" => "prefetch").increment(1);
        return Ok(NoContent);
    }
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let agent = state.agents.classify(user_agent);
    let bot = agent.bot;
    // A pixel hit that names no page (neither Referer nor Origin) may come from any page on
    // the web: accepted, kept as a count, never a view.
    let unverified = !bot && endpoint == Endpoint::Pixel && !names_a_page(headers);
    // The database's place; its country, else the trusted proxy's.
    let mut place = state.places.lookup(ip);
    if place.country.is_empty() {
        place.country = match state.settings.server.country_header.as_str() {
            "" => None,
            name => state
                .client
                .country(peer, headers.get(name).map(|v| v.as_bytes())),
        }
        .unwrap_or_default();
    }
    let client = Client {
        ip,
        user_agent,
        agent: &agent,
        place,
    };
    let now = state.clock.now();
    let date = now.with_timezone(&site.timezone).date_naive();
    let salt = if bot || unverified {
        None
    } else {
        Some(state.salt.for_date(date).await.map_err(|error| {
            tracing::warn!(message = "no visitor-id salt for the site's date", %error);
            ApiError::Unavailable
        })?)
    };
    let counted_only = if bot {
        Some(EventKind::Bot)
    } else if unverified {
        Some(EventKind::Unverified)
    } else {
        None
    };
    let tracked = tracked_event(state, hit, client, now, date, salt, counted_only);
    match state.batcher.submit(tracked).await {
        Ok(()) if bot => {
            counter!("tally_beacon_bots_total").increment(1);
            Ok(NoContent)
        }
        Ok(()) if unverified => {
            counter!("tally_beacon_unverified_total").increment(1);
            Ok(NoContent)
        }
        Ok(()) => {
            counter!("tally_beacon_accepted_total").increment(1);
            Ok(NoContent)
        }
        Err(SubmitError::Full) => Err(ApiError::Unavailable),
    }
}

/// The key of a hit's page in the per-page budgets (site and page key).
fn page_hash(hit: &Hit) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (hit.site.as_str(), hit.page.as_str()).hash(&mut h);
    h.finish()
}

/// What a request tells about the client that sent it.
struct Client<'a> {
    ip: IpAddr,
    user_agent: &'a str,
    agent: &'a Agent,
    /// Country (two-letter code), region and city; empty where unknown.
    place: crate::geo::Place,
}

/// The event to record for `hit` at `now`, local `date` in its site's zone; `salt` is that
/// date's. A hit `counted_only` (a crawler's, or an unverified pixel's) is kept as that kind
/// with no visitor id and no page details.
fn tracked_event(
    state: &State,
    hit: Hit,
    client: Client<'_>,
    now: DateTime<Utc>,
    date: NaiveDate,
    salt: Option<visitor::Salt>,
    counted_only: Option<EventKind>,
) -> TrackedEvent {
    let Client {
        ip,
        user_agent,
        agent,
        place,
    } = client;
    let ts_ms = now.timestamp_millis();
    let partition = hit.site.partition(state.settings.redis.partitions);
    let day = date.format("%Y%m%d").to_string();
    let (Some(salt), None) = (salt, counted_only) else {
        let event = Event {
            kind: counted_only.unwrap_or(EventKind::Bot),
            site: hit.site.as_str().to_owned(),
            ts_ms,
            ..Event::empty()
        };
        return TrackedEvent {
            event,
            partition,
            day,
            session_candidate: 0,
        };
    };
    let visitor = visitor::visitor_id(&salt, hit.site.as_str(), ip, user_agent);

    let event = Event {
        kind: hit.kind,
        site: hit.site.as_str().to_owned(),
        ts_ms,
        page: hit.page,
        path: hit.path,
        title: if hit.kind == EventKind::Pageview {
            hit.title
        } else {
            String::new()
        },
        referrer_host: hit.referrer_host,
        utm_source: hit.utm.source,
        utm_medium: hit.utm.medium,
        utm_campaign: hit.utm.campaign,
        browser: agent.browser.clone(),
        os: agent.os.clone(),
        device: agent.device.clone(),
        country: place.country,
        visitor,
        session: 0,
        new_visit: false,
        visit_seq: 0,
        gap_ms: 0,
        tab: hit.tab,
        width: hit.width,
        language: hit.language,
        region: place.region,
        city: place.city,
        name: hit.name,
        target: hit.target,
        props: hit.props,
    };
    TrackedEvent {
        event,
        partition,
        day,
        session_candidate: visitor::session_candidate(visitor, ts_ms),
    }
}

/// Browsers announce speculative loads; they are not views.
fn is_prefetch(headers: &HeaderMap) -> bool {
    ["purpose", "sec-purpose", "x-purpose", "x-moz"]
        .iter()
        .any(|name| {
            headers
                .get(*name)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| {
                    let v = v.to_ascii_lowercase();
                    v.contains("prefetch") || v.contains("prerender") || v.contains("preview")
                })
        })
}

/// `204 No Content` (readable from any origin: the beacon's CORS layer, see `Beacon::router`).
pub(crate) struct NoContent;

impl IntoResponse for NoContent {
    fn into_response(self) -> Response {
        StatusCode::NO_CONTENT.into_response()
    }
}

/// Whether the request says which page sent it (an `Origin` or a `Referer` header).
fn names_a_page(headers: &HeaderMap) -> bool {
    headers.contains_key(header::ORIGIN) || headers.contains_key(header::REFERER)
}

/// The event URL's host, and the request's Origin (or, without one, Referer) host, must be
/// among the site's domains or their subdomains. `Origin: null` is refused. Requests with
/// neither header pass here on the event URL alone; a pixel hit without either is then kept
/// as a count only (see [`names_a_page`]).
fn origin_allowed(headers: &HeaderMap, url_host: &str, domains: &[String]) -> bool {
    let allowed = |host: &str| {
        domains.iter().any(|d| {
            host == d
                || host
                    .strip_suffix(d.as_str())
                    .is_some_and(|p| p.ends_with('.'))
        })
    };
    if !allowed(url_host) {
        return false;
    }
    let source = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    match source {
        None => true,
        // A sandboxed frame, a file or a redirect across origins: no page of the site.
        Some("null") => false,
        Some(source) => page::split_url(source).is_some_and(|p| allowed(&p.host)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_rules() {
        let domains = vec!["news.vn".to_owned()];
        let mut h = HeaderMap::new();
        assert!(origin_allowed(&h, "news.vn", &domains));
        assert!(origin_allowed(&h, "m.news.vn", &domains));
        assert!(!origin_allowed(&h, "evilnews.vn", &domains));
        h.insert(header::ORIGIN, "https://news.vn".parse().unwrap());
        assert!(origin_allowed(&h, "news.vn", &domains));
        h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(!origin_allowed(&h, "news.vn", &domains));
        h.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(
            !origin_allowed(&h, "news.vn", &domains),
            "a sandboxed frame"
        );
        let mut h = HeaderMap::new();
        h.insert(header::REFERER, "https://www.news.vn/a".parse().unwrap());
        assert!(origin_allowed(&h, "news.vn", &domains));
    }

    #[test]
    fn prefetches_are_recognised() {
        for (name, value) in [
            ("purpose", "prefetch"),
            ("sec-purpose", "prefetch;prerender"),
            ("x-moz", "prefetch"),
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, value.parse().unwrap());
            assert!(is_prefetch(&h), "{name}: {value}");
        }
        assert!(!is_prefetch(&HeaderMap::new()));
    }

    #[test]
    fn the_pixel_is_a_valid_gif() {
        assert!(GIF.starts_with(b"GIF89a") && GIF.ends_with(b";"));
        assert_eq!(GIF.len(), 43);
    }
}
