//! The OpenAPI document of the HTTP API, served at `/api/openapi.json`. It is derived from
//! the handlers' `#[utoipa::path]` attributes and the bodies' `ToSchema`, so it cannot drift
//! from them; `scripts/test` runs a property-based fuzzer (schemathesis) against a live
//! server from it.

use axum::Json;
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use crate::{account, counters, events, goals, people, shares, sites, stats};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tally",
        description = "Visit analytics: live public counters and the admin statistics API."
    ),
    paths(
        counters::counters,
        counters::views,
        counters::event_counters,
        sites::list,
        sites::create,
        sites::edit,
        sites::delete,
        people::list,
        people::invite,
        people::remove,
        shares::list,
        shares::create,
        shares::revoke,
        goals::list,
        goals::create,
        goals::delete,
        account::list,
        account::create,
        account::revoke,
        account::change_password,
        account::sign_out_everywhere,
        stats::summary,
        stats::timeseries,
        stats::pages,
        stats::referrers,
        stats::browsers,
        stats::os,
        stats::devices,
        stats::countries,
        stats::regions,
        stats::cities,
        stats::utm_sources,
        stats::utm_mediums,
        stats::utm_campaigns,
        stats::screens,
        stats::languages,
        stats::entry_pages,
        stats::exit_pages,
        events::events,
        events::targets,
        events::props,
        goals::stats,
        stats::realtime,
    ),
    modifiers(&Bearer),
    tags(
        (name = "public", description = "Live counters of sites with public counters: no token, any origin"),
        (name = "admin", description = "Statistics: an admin token (`Authorization: Bearer …`) that may read the site"),
    ),
)]
struct Document;

/// The `bearer` security scheme the admin operations name.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document.
pub(crate) fn build() -> utoipa::openapi::OpenApi {
    Document::openapi()
}

/// `GET /api/openapi.json`
pub(crate) async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(build())
}
