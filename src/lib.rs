//! # tally
//!
//! The `tally` binary's library: it assembles the roles of the workspace crates into one
//! process. `tally serve` runs all three roles; `--roles` picks some.
//!
//! - [`App`]: build the roles from [`Settings`], bind the listener, run until shutdown.
//! - [`cli`]: the command line.
//!
//! One HTTP listener serves `/healthz`, `/readyz` and the routes of the HTTP roles that run
//! (beacon, api). The worker role runs in the background of the same process.

pub mod bench;
pub mod cli;
pub mod dead_letters;
pub mod directory;
mod health;
pub mod import;
pub mod loadgen;
pub mod rebuild;
mod server;

use std::{collections::BTreeSet, fmt, net::SocketAddr, str::FromStr, time::Duration};

use anyhow::Context;
use axum::{Router, http::StatusCode};
use tally_clickhouse::Db;
use tally_core::{Clock, Settings};
use tally_redis::Store;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::info;

/// A role this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Beacon,
    Worker,
    Api,
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "beacon" => Ok(Self::Beacon),
            "worker" => Ok(Self::Worker),
            "api" => Ok(Self::Api),
            other => Err(format!("unknown role `{other}` (beacon, worker, api)")),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Beacon => "beacon",
            Self::Worker => "worker",
            Self::Api => "api",
        })
    }
}

/// The set of roles to run; all three by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roles(pub BTreeSet<Role>);

impl Roles {
    pub fn all() -> Self {
        Self([Role::Beacon, Role::Worker, Role::Api].into())
    }

    pub fn has(&self, role: Role) -> bool {
        self.0.contains(&role)
    }
}

impl FromStr for Roles {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let roles = s
            .split(',')
            .filter(|r| !r.trim().is_empty())
            .map(str::parse)
            .collect::<Result<BTreeSet<Role>, _>>()?;
        if roles.is_empty() {
            return Err("name at least one role".into());
        }
        Ok(Self(roles))
    }
}

/// A built Tally process, ready to run.
pub struct App {
    listener: TcpListener,
    router: Router,
    beacon: Option<tally_beacon::Beacon>,
    worker: Option<tally_worker::Worker>,
    shutdown_timeout: Duration,
    /// The listener of `/metrics` (`server.metrics_listen`), apart from the public one.
    metrics: Option<TcpListener>,
    limits: server::Limits,
    readiness: std::sync::Arc<health::Readiness>,
    refresher: directory::Refresher,
}

impl App {
    /// Connects to Redis and ClickHouse, applies migrations (roles that use ClickHouse),
    /// builds the roles and binds `server.listen` (port 0 picks a free port).
    pub async fn build(settings: Settings, roles: Roles) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, roles, Clock::system()).await
    }

    /// Like [`build`](Self::build), with the roles going by `clock` (tests set the time).
    pub async fn build_with_clock(
        settings: Settings,
        roles: Roles,
        clock: Clock,
    ) -> anyhow::Result<Self> {
        let store = Store::connect(&settings.redis).await.with_context(|| {
            format!("cannot connect to Redis at {}", settings.redis.shown_url())
        })?;
        let db = Db::new(&settings.clickhouse);
        if roles.has(Role::Worker) || roles.has(Role::Api) {
            db.migrate(&settings.sites).await.with_context(|| {
                format!("cannot migrate ClickHouse at {}", settings.clickhouse.url)
            })?;
        }
        // The sites: the configuration's, and those managed live as ClickHouse and Redis
        // know them now (a process that cannot read them yet starts with the configuration's
        // and keeps trying).
        let sites = tally_core::directory::Directory::new(&settings.sites);
        let mut refresher = directory::Refresher::new(sites.clone(), store.clone(), db.clone());
        if let Err(error) = refresher.refresh().await {
            tracing::warn!(message = "cannot read the managed sites yet; serving the configuration's", %error);
        }
        if sites.sites().is_empty() {
            tracing::warn!("no site yet: create one at /admin or with POST /api/v1/sites");
        }
        let readiness = health::Readiness::new(store.clone(), db.clone());
        let mut router = health::router(readiness.clone());
        let beacon = if roles.has(Role::Beacon) {
            let beacon =
                tally_beacon::Beacon::build(&settings, sites.clone(), store.clone(), clock.clone())
                    .await?;
            router = router.merge(beacon.router());
            Some(beacon)
        } else {
            None
        };
        if roles.has(Role::Api) {
            let api = tally_api::Api::build(
                &settings,
                sites.clone(),
                store.clone(),
                db.clone(),
                clock.clone(),
            );
            router = router.merge(api.router());
        }
        let worker = if roles.has(Role::Worker) {
            Some(
                tally_worker::Worker::build(&settings, sites.clone(), db.clone(), clock.clone())
                    .await?,
            )
        } else {
            None
        };
        // Unknown paths and methods answer in the contract's error format too; every request
        // gets an id, a span and the common security header (server::layers).
        let router = router
            .fallback(|| async {
                health::error(StatusCode::NOT_FOUND, "not_found", "no such resource")
            })
            .method_not_allowed_fallback(|| async {
                health::error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "this resource does not take that method",
                )
            });
        let router = server::layers(router);
        let listener = TcpListener::bind(settings.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.server.listen))?;
        let metrics = match settings.server.metrics_listen.as_str() {
            "" => None,
            addr => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (server.metrics_listen)"))?,
            ),
        };
        info!(addr = %listener.local_addr()?, roles = ?roles.0, "tally ready");
        Ok(Self {
            listener,
            router,
            beacon,
            worker,
            shutdown_timeout: settings.server.shutdown_timeout,
            metrics,
            readiness,
            limits: server::Limits::of(&settings.server),
            refresher,
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// The address `/metrics` is served on, if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, lets in-flight requests
    /// finish, flushes the beacon's buffer and lets the worker ack its batch.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let tracker = TaskTracker::new();
        // Background tasks stop only after the HTTP server has, so the last requests' events
        // still reach the batcher.
        let background = CancellationToken::new();
        if let Some(beacon) = self.beacon {
            beacon.spawn(&tracker, background.clone());
        }
        if let Some(worker) = self.worker {
            worker.spawn(&tracker, background.clone());
        }
        tracker.spawn(self.readiness.clone().watch(background.clone()));
        tracker.spawn(self.refresher.run(background.clone()));
        if let Some(listener) = self.metrics {
            let stop = background.clone();
            tracker.spawn(async move {
                let served = axum::serve(listener, health::metrics_router())
                    .with_graceful_shutdown(async move { stop.cancelled().await });
                if let Err(error) = served.await {
                    tracing::warn!(message = "the metrics listener failed", %error);
                }
            });
        }
        tracker.close();
        server::serve(self.listener, self.router, self.limits, shutdown).await;
        background.cancel();
        if tokio::time::timeout(
            self.shutdown_timeout + Duration::from_secs(1),
            tracker.wait(),
        )
        .await
        .is_err()
        {
            tracing::warn!("background tasks did not stop within the shutdown timeout");
        }
        info!("tally stopped");
        Ok(())
    }
}
