//! # tally-api
//!
//! The read side: public live counters (CORS `*`, short cache) and, later, the admin
//! statistics API and pages.
//!
//! - [`counters`]: `GET /api/v1/sites/{site}/counters` and `/views`, live from Redis.

mod counters;
mod error;

use std::{collections::HashMap, sync::Arc};

use axum::{Router, routing::get};
use tally_clickhouse::Db;
use tally_core::{Settings, SiteId, settings::SiteSettings};
use tally_redis::Store;

pub use error::ApiError;

pub(crate) struct State {
    pub(crate) settings: Settings,
    pub(crate) sites: HashMap<SiteId, SiteSettings>,
    pub(crate) store: Store,
    #[allow(dead_code)]
    pub(crate) db: Db,
}

/// The api role.
pub struct Api {
    state: Arc<State>,
}

impl Api {
    pub fn build(settings: &Settings, store: Store, db: Db) -> Self {
        let state = State {
            sites: settings
                .sites
                .iter()
                .map(|s| (s.id.clone(), s.clone()))
                .collect(),
            settings: settings.clone(),
            store,
            db,
        };
        Self {
            state: Arc::new(state),
        }
    }

    /// The api's routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/api/v1/sites/{site}/counters", get(counters::counters))
            .route("/api/v1/sites/{site}/views", get(counters::views))
            .with_state(self.state.clone())
    }
}
