//! `POST /collect`: the contract's status codes, in the order they are checked.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    body::Bytes,
    extract::{ConnectInfo, State as AxumState},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::Utc;
use tally_core::{
    Event, EventKind,
    event::{self, Hit, MAX_BODY},
    page, visitor,
};
use tally_redis::TrackedEvent;

use crate::{ApiError, State, batcher::SubmitError};

pub(crate) async fn post_collect(
    AxumState(state): AxumState<Arc<State>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<NoContent, ApiError> {
    if body.len() > MAX_BODY {
        return Err(ApiError::TooLarge);
    }
    let hit = event::parse_collect(&body).map_err(|e| ApiError::Malformed(e.to_string()))?;
    accept(&state, hit, peer, &headers).await
}

/// Applies the site, origin and buffer rules to a parsed hit and queues it.
async fn accept(
    state: &State,
    hit: Hit,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<NoContent, ApiError> {
    let site = state.sites.get(&hit.site).ok_or(ApiError::UnknownSite)?;
    if !origin_allowed(headers, &hit.host, &site.domains) {
        return Err(ApiError::OriginNotAllowed);
    }
    let ip = state.client.resolve(peer, headers);
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let now = Utc::now();
    let ts_ms = now.timestamp_millis();
    let visitor = visitor::visitor_id(&state.salt.get(), hit.site.as_str(), ip, user_agent);
    let ua = woothee::parser::Parser::new().parse(user_agent);
    let (browser, os, device) = match &ua {
        Some(ua) => (
            ua.name.to_owned(),
            ua.os.to_owned(),
            device_class(ua.category),
        ),
        None => (String::new(), String::new(), String::new()),
    };
    let partition = hit.site.partition(state.settings.redis.partitions);
    let day = now
        .with_timezone(&site.timezone)
        .format("%Y%m%d")
        .to_string();
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
        browser,
        os,
        device,
        country: String::new(),
        visitor,
        session: 0,
        new_visit: false,
        tab: hit.tab,
        width: hit.width,
    };
    let tracked = TrackedEvent {
        event,
        partition,
        day,
        session_candidate: visitor::session_candidate(visitor, ts_ms),
    };
    match state.batcher.submit(tracked).await {
        Ok(()) => Ok(NoContent),
        Err(SubmitError::Full) => Err(ApiError::Unavailable),
    }
}

/// `204 No Content`, readable from any origin (the tracker runs on the customer's site).
pub(crate) struct NoContent;

impl IntoResponse for NoContent {
    fn into_response(self) -> Response {
        (
            StatusCode::NO_CONTENT,
            [(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            )],
        )
            .into_response()
    }
}

fn device_class(category: &str) -> String {
    match category {
        "pc" => "desktop",
        "smartphone" => "mobile",
        "mobilephone" => "mobile",
        "appliance" => "other",
        _ => "unknown",
    }
    .to_owned()
}

/// The request's Origin (or, without one, Referer) host and the event's URL host must both be
/// among the site's domains (or subdomains of them). Requests with neither header — pixels
/// in privacy-minded browsers — are judged by the event URL alone.
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
        None | Some("null") => true,
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
        let mut h = HeaderMap::new();
        h.insert(header::REFERER, "https://www.news.vn/a".parse().unwrap());
        assert!(origin_allowed(&h, "news.vn", &domains));
    }
}
