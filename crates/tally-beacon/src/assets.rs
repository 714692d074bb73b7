//! Static assets of the beacon: the tracker `/t.js` and the optional `/demo` article.

use std::sync::Arc;

use axum::{
    extract::State as AxumState,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
};

use crate::State;

/// The tracker with the configured heartbeat filled in, and its ETag.
pub(crate) struct Tracker {
    body: String,
    etag: HeaderValue,
}

impl Tracker {
    pub(crate) fn new(heartbeat_ms: u128) -> Self {
        let body = compact(include_str!("../assets/t.js"))
            .replace("__HEARTBEAT_MS__", &heartbeat_ms.to_string());
        // FNV-1a of the body: any change of tracker or heartbeat changes the tag.
        let hash = body.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let etag = HeaderValue::from_str(&format!("\"{hash:016x}\"")).expect("ascii etag");
        Self { body, etag }
    }
}

/// The tracker as served: without its header comment, its comment lines and indentation
/// (the source is written for reading; every byte is sent on every first visit). Only whole
/// lines starting with `//` are comments here: the file is ours and keeps to that.
fn compact(source: &str) -> String {
    let code = match source.split_once("*/") {
        Some((head, rest)) if head.trim_start().starts_with("/*") => rest,
        _ => source,
    };
    code.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `GET /t.js`: cacheable for a day, revalidated with the ETag.
pub(crate) async fn tracker(
    AxumState(state): AxumState<Arc<State>>,
    headers: HeaderMap,
) -> Response {
    let t = &state.tracker;
    if headers.get(header::IF_NONE_MATCH) == Some(&t.etag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, t.etag.clone())]).into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/javascript; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            ),
            (header::ETAG, t.etag.clone()),
        ],
        t.body.clone(),
    )
        .into_response()
}

/// `GET /demo` and `/demo/...`: a demo article embedding the tracker (`server.demo_page`).
pub(crate) async fn demo() -> Html<&'static str> {
    Html(include_str!("../assets/demo.html"))
}
