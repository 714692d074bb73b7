//! # tally-api
//!
//! The read side: public live counters (CORS `*`, short cache), the admin statistics API
//! and the admin pages.
//!
//! - `counters`: `GET /api/v1/sites/{site}/counters` and `/views`, live from Redis;
//!   `live` batches the counters reads of concurrent requests.
//! - `sites`: `/api/v1/sites` and `/api/v1/sites/{site}`: sites listed, created, edited
//!   and deleted live (admin token).
//! - `stats`: `/api/v1/sites/{site}/stats/*` (admin token); `events` the custom events'
//!   reports, `goals` the goals and their conversions.
//! - `auth`, `session`: bearer tokens and admin page sessions.
//! - `openapi`: the OpenAPI document at `/api/openapi.json`.

mod account;
mod admin;
mod auth;
mod counters;
mod csv;
mod error;
mod events;
mod goals;
mod live;
mod openapi;
mod people;
mod principal;
mod session;
mod shares;
mod sites;
mod stats;

use std::sync::Arc;

use axum::{
    Router,
    routing::{get, post},
};
use tally_clickhouse::Db;
use tally_core::{Clock, Settings, directory::Directory};
use tally_redis::Store;

pub use error::ApiError;
pub use people::add_person;

pub(crate) struct State {
    pub(crate) settings: Settings,
    /// The sites served now (the configuration's and those managed live).
    pub(crate) directory: Directory,
    pub(crate) store: Store,
    /// Batched reads of the public counters.
    pub(crate) live: live::LiveReader,
    pub(crate) db: Db,
    pub(crate) client: tally_core::client::ClientAddr,
    /// Sign-in attempts per client address: a handful a minute, so tokens cannot be guessed.
    pub(crate) logins: governor::DefaultKeyedRateLimiter<std::net::IpAddr>,
    /// Wrong bearer tokens per client network.
    pub(crate) failed_tokens: auth::FailedTokens,
    /// Now, for default ranges and who is online.
    pub(crate) clock: Clock,
}

/// The api role.
pub struct Api {
    state: Arc<State>,
}

impl Api {
    /// Builds the role; starts the counters reader task (call within a Tokio runtime).
    pub fn build(
        settings: &Settings,
        directory: Directory,
        store: Store,
        db: Db,
        clock: Clock,
    ) -> Self {
        let state = State {
            directory,
            settings: settings.clone(),
            live: live::LiveReader::spawn(
                store.clone(),
                settings.tracking.online_window,
                clock.clone(),
            ),
            store,
            db,
            client: tally_core::client::ClientAddr::new(settings.server.trusted_proxies.clone()),
            logins: governor::RateLimiter::keyed(governor::Quota::per_minute(
                std::num::NonZeroU32::new(10).expect("non-zero"),
            )),
            clock,
            failed_tokens: auth::FailedTokens::default(),
        };
        let state = Arc::new(state);
        // Forget sign-in limits of addresses that have been quiet for their whole window, so
        // the limiter's memory follows recent clients only; ends with the role.
        let weak = Arc::downgrade(&state);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                let Some(state) = weak.upgrade() else { return };
                state.logins.retain_recent();
                state.failed_tokens.forget_old();
            }
        });
        Self { state }
    }

    /// The api's routes.
    pub fn router(&self) -> Router {
        // The public counters are read from the sites' pages: any origin may read them.
        // The admin API and pages get no CORS headers: only their own origin reads them.
        let cors = tower_http::cors::CorsLayer::new()
            .allow_origin(tower_http::cors::Any)
            .allow_methods([axum::http::Method::GET])
            .max_age(std::time::Duration::from_secs(86_400));
        let public = Router::new()
            .route("/api/v1/sites/{site}/counters", get(counters::counters))
            .route("/api/v1/sites/{site}/views", get(counters::views))
            .route(
                "/api/v1/sites/{site}/event-counters",
                get(counters::event_counters),
            )
            .with_state(self.state.clone())
            .layer(cors);
        Router::new()
            .route("/api/v1/sites", get(sites::list).post(sites::create))
            .route(
                "/api/v1/sites/{site}",
                axum::routing::patch(sites::edit).delete(sites::delete),
            )
            .route(
                "/api/v1/sites/{site}/shares",
                get(shares::list).post(shares::create),
            )
            .route(
                "/api/v1/sites/{site}/shares/{id}",
                axum::routing::delete(shares::revoke),
            )
            .route(
                "/api/v1/sites/{site}/goals",
                get(goals::list).post(goals::create),
            )
            .route(
                "/api/v1/sites/{site}/goals/{id}",
                axum::routing::delete(goals::delete),
            )
            .route(
                "/share/{secret}",
                get(admin::shared_page).post(admin::shared_password),
            )
            .route("/api/v1/users", get(people::list).post(people::invite))
            .route("/api/v1/tokens", get(account::list).post(account::create))
            .route(
                "/api/v1/tokens/{id}",
                axum::routing::delete(account::revoke),
            )
            .route("/api/v1/account/password", post(account::change_password))
            .route(
                "/api/v1/account/sign-out-everywhere",
                post(account::sign_out_everywhere),
            )
            .route(
                "/api/v1/users/{name}",
                axum::routing::delete(people::remove),
            )
            .route(
                "/admin/invite/{secret}",
                get(admin::invite_page).post(admin::accept_invite),
            )
            .route("/api/v1/sites/{site}/stats/summary", get(stats::summary))
            .route(
                "/api/v1/sites/{site}/stats/timeseries",
                get(stats::timeseries),
            )
            .route("/api/v1/sites/{site}/stats/pages", get(stats::pages))
            .route("/api/v1/sites/{site}/stats/realtime", get(stats::realtime))
            .route(
                "/api/v1/sites/{site}/stats/referrers",
                get(stats::referrers),
            )
            .route("/api/v1/sites/{site}/stats/browsers", get(stats::browsers))
            .route("/api/v1/sites/{site}/stats/regions", get(stats::regions))
            .route("/api/v1/sites/{site}/stats/cities", get(stats::cities))
            .route(
                "/api/v1/sites/{site}/stats/utm-sources",
                get(stats::utm_sources),
            )
            .route(
                "/api/v1/sites/{site}/stats/utm-mediums",
                get(stats::utm_mediums),
            )
            .route(
                "/api/v1/sites/{site}/stats/utm-campaigns",
                get(stats::utm_campaigns),
            )
            .route("/api/v1/sites/{site}/stats/screens", get(stats::screens))
            .route(
                "/api/v1/sites/{site}/stats/languages",
                get(stats::languages),
            )
            .route(
                "/api/v1/sites/{site}/stats/entry-pages",
                get(stats::entry_pages),
            )
            .route(
                "/api/v1/sites/{site}/stats/exit-pages",
                get(stats::exit_pages),
            )
            .route("/api/v1/sites/{site}/stats/events", get(events::events))
            .route(
                "/api/v1/sites/{site}/stats/events/targets",
                get(events::targets),
            )
            .route(
                "/api/v1/sites/{site}/stats/events/props",
                get(events::props),
            )
            .route("/api/v1/sites/{site}/stats/goals", get(goals::stats))
            .route("/api/v1/sites/{site}/stats/os", get(stats::os))
            .route("/api/v1/sites/{site}/stats/devices", get(stats::devices))
            .route(
                "/api/v1/sites/{site}/stats/countries",
                get(stats::countries),
            )
            .route("/api/openapi.json", get(openapi::document))
            .route("/admin", get(admin::index))
            .route("/admin/login", post(admin::login))
            .route("/admin/logout", post(admin::logout))
            .route("/admin/sites/{site}", get(admin::site))
            .route("/admin/sites/{site}/settings", get(admin::site_settings))
            .route("/admin/sites/{site}/export", get(admin::export))
            .route("/admin/people", get(admin::people_page))
            .route("/admin/account", get(admin::account_page))
            .route("/admin/changes", get(admin::changes_page))
            .route("/admin/assets/{file}", get(admin::asset))
            .with_state(self.state.clone())
            .merge(public)
    }
}
