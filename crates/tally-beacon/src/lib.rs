//! # tally-beacon
//!
//! The tracking edge: `POST /collect`. Per request the handler does one parse, one
//! validation and one enqueue into the [`batcher`], which writes many events per Redis round
//! trip and keeps a bounded buffer while Redis is unreachable.
//!
//! - [`collect`]: the HTTP handlers and the rules of the contract (status codes).
//! - [`batcher`]: the micro-batcher and its buffer.
//! - [`salt`]: the visitor-id salts of the local dates in use, fetched ahead in the
//!   background.

mod agent;
mod assets;
pub mod batcher;
mod collect;
mod error;
pub mod geo;
pub mod salt;

use std::sync::Arc;

use axum::{
    Router,
    routing::{get, post},
};
use tally_core::{Clock, Settings, directory::Directory};
use tally_redis::Store;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use error::ApiError;

/// Errors while starting the beacon.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Redis(#[from] tally_redis::Error),
    #[error(transparent)]
    Geo(#[from] geo::OpenError),
}

/// Shared state of the handlers.
pub(crate) struct State {
    pub(crate) settings: Settings,
    /// The sites served now (the configuration's and those managed live).
    pub(crate) directory: Directory,
    pub(crate) batcher: batcher::Handle,
    pub(crate) salt: salt::SaltCache,
    pub(crate) client: tally_core::client::ClientAddr,
    pub(crate) tracker: assets::Tracker,
    pub(crate) agents: agent::Agents,
    /// `geoip.database`.
    pub(crate) places: geo::Places,
    pub(crate) limiter: Option<governor::DefaultKeyedRateLimiter<std::net::IpAddr>>,
    /// Page views per client network and page (site and page key hashed).
    pub(crate) page_limiter: Option<governor::DefaultKeyedRateLimiter<(std::net::IpAddr, u64)>>,
    /// The time events are recorded at.
    pub(crate) clock: Clock,
}

/// The beacon role.
pub struct Beacon {
    state: Arc<State>,
    batcher: batcher::Batcher,
}

impl Beacon {
    /// Builds the role: loads the salts of the dates in use (Redis must be reachable at
    /// start). `clock` is the time events are recorded at.
    pub async fn build(
        settings: &Settings,
        directory: Directory,
        store: Store,
        clock: Clock,
    ) -> Result<Self, Error> {
        let (handle, batcher) = batcher::Batcher::new(store.clone(), settings, clock.clone());
        let salt = salt::SaltCache::load(store, clock.clone()).await?;
        let places = geo::Places::open(&settings.geoip.database)?;
        let state = State {
            directory,
            client: tally_core::client::ClientAddr::new(settings.server.trusted_proxies.clone()),
            settings: settings.clone(),
            batcher: handle,
            salt,
            tracker: assets::Tracker::new(settings.tracking.heartbeat.as_millis()),
            agents: agent::Agents::new(),
            places,
            // Each of beacon.processes processes enforces its share of the limits.
            limiter: std::num::NonZeroU32::new(
                settings
                    .beacon
                    .share_of(settings.beacon.rate_limit_per_minute),
            )
            .map(|n| governor::RateLimiter::keyed(governor::Quota::per_minute(n))),
            page_limiter: std::num::NonZeroU32::new(
                settings
                    .beacon
                    .share_of(settings.beacon.rate_limit_per_page_per_minute),
            )
            .map(|n| governor::RateLimiter::keyed(governor::Quota::per_minute(n))),
            clock,
        };
        Ok(Self {
            state: Arc::new(state),
            batcher,
        })
    }

    /// The beacon's routes, readable and postable from any origin (the tracker runs on the
    /// customer's pages; which origins may count is the site check of `/collect`, not CORS).
    /// A tracker that posts `application/json` gets its preflight answered.
    pub fn router(&self) -> Router {
        let cors = tower_http::cors::CorsLayer::new()
            .allow_origin(tower_http::cors::Any)
            .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
            .allow_headers([axum::http::header::CONTENT_TYPE])
            .max_age(std::time::Duration::from_secs(86_400));
        let mut router = Router::new()
            // The CORS layer answers preflights; the OPTIONS route makes it reach them (the
            // app's 405 fallback would take an OPTIONS without one, outside the layer).
            .route(
                "/collect",
                post(collect::post_collect)
                    .options(|| async { axum::http::StatusCode::NO_CONTENT }),
            )
            .route("/collect.gif", get(collect::pixel))
            .route("/t.js", get(assets::tracker));
        if self.state.settings.server.demo_page {
            router = router
                .route("/demo", get(assets::demo))
                .route("/demo/{*rest}", get(assets::demo));
        }
        router.with_state(self.state.clone()).layer(cors)
    }

    /// Runs the batcher and the salt refresher until `shutdown`, then flushes the buffer
    /// (for at most `server.shutdown_timeout`).
    pub fn spawn(self, tracker: &TaskTracker, shutdown: CancellationToken) {
        tracker.spawn(self.state.salt.clone().keep_ahead(shutdown.clone()));
        tracker.spawn(self.state.places.clone().watch(shutdown.clone()));
        let state = self.state.clone();
        let stop = shutdown.clone();
        tracker.spawn(async move {
            // Forget idle clients of the rate limiter and publish the buffer size.
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                }
                if let Some(limiter) = &state.limiter {
                    limiter.retain_recent();
                }
                if let Some(limiter) = &state.page_limiter {
                    limiter.retain_recent();
                }
                metrics::gauge!("tally_beacon_buffered_events")
                    .set(state.batcher.buffered() as f64);
                metrics::gauge!("tally_beacon_buffer_capacity")
                    .set(state.settings.beacon.buffer as f64);
            }
        });
        tracker.spawn(self.batcher.run(shutdown));
    }
}
