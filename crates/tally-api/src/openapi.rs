//! The OpenAPI 3.0 document of the HTTP contract, served at `/api/openapi.json`. It is built
//! here, next to the routes, and a test walks it and calls every operation it lists.

use axum::Json;
use serde_json::{Value, json};

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn ok(schema: Value) -> Value {
    json!({"description": "OK", "content": {"application/json": {"schema": schema}}})
}

fn param(name: &str, location: &str, required: bool, schema: Value, description: &str) -> Value {
    json!({"name": name, "in": location, "required": required, "schema": schema, "description": description})
}

fn site() -> Value {
    param(
        "site",
        "path",
        true,
        json!({"type": "string", "pattern": "^[a-z0-9_-]{1,64}$"}),
        "Site id",
    )
}

fn date(name: &str) -> Value {
    param(
        name,
        "query",
        false,
        json!({"type": "string", "format": "date"}),
        "Day in the site's time zone (YYYY-MM-DD); default today; `to` inclusive",
    )
}

fn limit() -> Value {
    param(
        "limit",
        "query",
        false,
        json!({"type": "integer", "minimum": 0, "maximum": 1000, "default": 20}),
        "Rows to return",
    )
}

fn admin_op(summary: &str, params: Vec<Value>, schema: Value) -> Value {
    json!({"get": {
        "summary": summary,
        "security": [{"bearer": []}],
        "parameters": params,
        "responses": {
            "200": ok(schema),
            "400": error_response("Invalid parameter"),
            "401": error_response("No or wrong token"),
            "403": error_response("The token may not read this site"),
            "429": error_response("Too many wrong tokens from this address in a minute (Retry-After: 60)"),
            "404": error_response("Unknown site"),
        }
    }})
}

fn counts(extra: &[(&str, Value)]) -> Value {
    let mut props = serde_json::Map::new();
    for (k, v) in extra {
        props.insert((*k).to_owned(), v.clone());
    }
    for k in ["views", "visitors"] {
        props.insert(k.to_owned(), json!({"type": "integer", "minimum": 0}));
    }
    json!({"type": "object", "properties": props, "required": props.keys().collect::<Vec<_>>()})
}

/// The document.
pub(crate) fn build() -> Value {
    let string = json!({"type": "string"});
    let int = json!({"type": "integer", "minimum": 0});
    let range = || vec![site(), date("from"), date("to")];
    let mut paths = serde_json::Map::new();
    paths.insert("/api/v1/sites/{site}/counters".into(), json!({"get": {
        "summary": "Live public counters of a site and, with `page` or `url`, of one page",
        "parameters": [site(), param("page", "query", false, string.clone(), "Page key"),
            param("url", "query", false, string.clone(),
                "Instead of `page`: a page's absolute http(s) address; its page key is made as the beacon makes it from an event's `url`")],
        "responses": {
            "200": ok(json!({"type": "object", "required": ["site", "online", "total_views", "total_visits"], "properties": {
                "site": string, "page": string, "page_views": int, "page_online": int,
                "online": int, "total_views": int, "total_visits": int}})),
            "400": error_response("Invalid parameter"),
            "404": error_response("Unknown site, or counters not public"),
        }
    }}));
    paths.insert("/api/v1/sites/{site}/views".into(), json!({"get": {
        "summary": "Live view counts of up to 100 pages",
        "parameters": [site(), param("page", "query", true, json!({"type": "array", "items": {"type": "string"}, "maxItems": 100}), "Page keys")],
        "responses": {
            "200": ok(json!({"type": "object", "required": ["site", "views"], "properties": {
                "site": string, "views": {"type": "object", "additionalProperties": int}}})),
            "400": error_response("No page, or more than 100"),
            "404": error_response("Unknown site, or counters not public"),
        }
    }}));
    paths.insert("/api/v1/sites".into(), json!({"get": {
        "summary": "The sites this token may read",
        "security": [{"bearer": []}],
        "responses": {
            "200": ok(json!({"type": "object", "required": ["sites"], "properties": {"sites": {"type": "array", "items": {
                "type": "object", "required": ["id", "timezone", "domains", "public_counters", "total_views", "total_visits"], "properties": {
                "id": string, "timezone": string, "domains": {"type": "array", "items": string}, "public_counters": {"type": "boolean"},
                "total_views": int, "total_visits": int}}}}})),
            "401": error_response("No or wrong token"),
            "429": error_response("Too many wrong tokens from this address in a minute (Retry-After: 60)"),
        }
    }}));
    paths.insert("/api/v1/sites/{site}/stats/summary".into(), admin_op(
        "Views, visits, unique visitors, bounce rate, average visit, filtered bots",
        range(),
        json!({"type": "object", "required": ["views", "visits", "visitors", "bounce_rate", "avg_visit_seconds", "bots_filtered", "repeats_not_counted", "unverified_not_counted"], "properties": {
            "views": int, "visits": int, "visitors": int, "bounce_rate": {"type": "number", "minimum": 0, "maximum": 1},
            "avg_visit_seconds": {"type": "number", "minimum": 0}, "bots_filtered": int, "repeats_not_counted": int, "unverified_not_counted": int}}),
    ));
    let mut ts_params = range();
    ts_params.push(param(
        "interval",
        "query",
        false,
        json!({"type": "string", "enum": ["hour", "day"], "default": "day"}),
        "Bucket size",
    ));
    paths.insert("/api/v1/sites/{site}/stats/timeseries".into(), admin_op(
        "Views, visits and unique visitors per hour or day (every bucket of the range)",
        ts_params,
        json!({"type": "object", "required": ["points"], "properties": {"points": {"type": "array", "items": {
            "type": "object", "required": ["t", "views", "visits", "visitors"], "properties": {
            "t": {"type": "string", "format": "date-time"}, "views": int, "visits": int, "visitors": int}}}}}),
    ));
    let mut page_params = range();
    page_params.push(limit());
    page_params.push(param(
        "offset",
        "query",
        false,
        json!({"type": "integer", "minimum": 0, "default": 0}),
        "Rows to skip",
    ));
    paths.insert("/api/v1/sites/{site}/stats/pages".into(), admin_op(
        "Top pages by views",
        page_params,
        json!({"type": "object", "required": ["pages"], "properties": {"pages": {"type": "array", "items":
            counts(&[("page", string.clone()), ("path", string.clone()), ("title", string.clone())])}}}),
    ));
    for dim in ["referrers", "browsers", "os", "devices", "countries"] {
        let mut p = range();
        p.push(limit());
        paths.insert(format!("/api/v1/sites/{{site}}/stats/{dim}"), admin_op(
            &format!("Top {dim} by views"),
            p,
            json!({"type": "object", "required": ["rows"], "properties": {"rows": {"type": "array", "items": counts(&[("name", string.clone())])}}}),
        ));
    }
    paths.insert("/api/v1/sites/{site}/stats/realtime".into(), admin_op(
        "Online now, pages being read (the 50 with most readers among the 200 with the latest events; `other` marks the row of the pages past tracking.max_pages, page \"\"), views per minute over the last 30 minutes, and how many pages the site holds live against its cap (live)",
        vec![site()],
        json!({"type": "object", "required": ["online", "pages", "views_per_minute", "live_pages", "max_pages"], "properties": {
            "online": int,
            "live_pages": int,
            "max_pages": int,
            "pages": {"type": "array", "items": {"type": "object", "required": ["page", "title", "online", "other"], "properties": {"page": string, "title": string, "online": int, "other": {"type": "boolean"}}}},
            "views_per_minute": {"type": "array", "items": {"type": "object", "required": ["t", "views"], "properties": {"t": {"type": "string", "format": "date-time"}, "views": int}}}}}),
    ));
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Tally", "version": env!("CARGO_PKG_VERSION"), "description": "Visit analytics: live public counters and the admin statistics API."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}},
        }
    })
}

/// `GET /api/openapi.json`
pub(crate) async fn document() -> Json<Value> {
    Json(build())
}
