//! [`TestApp`]: the real roles, assembled as `tally serve` does, on port 0.

use std::net::SocketAddr;

use tally::{App, Roles};
use tally_clickhouse::Db;
use tally_core::{Clock, Settings};
use tally_redis::Store;
use tokio_util::sync::CancellationToken;

/// A running Tally on a free port. Stops (gracefully) when dropped or [`stop`](Self::stop)ped.
pub struct TestApp {
    pub addr: SocketAddr,
    /// Where `/metrics` is served (the tests' settings ask for a free loopback port).
    pub metrics_addr: Option<SocketAddr>,
    pub settings: Settings,
    /// The clock the app goes by.
    pub clock: Clock,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// Runs all three roles with `settings`.
    pub async fn spawn(settings: Settings) -> Self {
        Self::spawn_roles(settings, Roles::all()).await
    }

    /// Runs the given roles with `settings`.
    pub async fn spawn_roles(settings: Settings, roles: Roles) -> Self {
        Self::spawn_with_clock(settings, roles, Clock::system()).await
    }

    /// Runs the given roles with `settings`, going by `clock` (a [`Clock::manual`] one lets
    /// the test choose the time events are recorded and statistics asked at).
    pub async fn spawn_with_clock(settings: Settings, roles: Roles, clock: Clock) -> Self {
        let app = App::build_with_clock(settings.clone(), roles, clock.clone())
            .await
            .expect("build the app");
        let addr = app.local_addr();
        let metrics_addr = app.metrics_addr();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run(shutdown.clone()));
        Self {
            addr,
            metrics_addr,
            settings,
            clock,
            shutdown,
            task: Some(task),
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `http://127.0.0.1:PORT/metrics` of the metrics listener.
    pub fn metrics_url(&self) -> String {
        format!(
            "http://{}/metrics",
            self.metrics_addr.expect("a metrics listener")
        )
    }

    /// A Redis handle on this app's database.
    pub async fn store(&self) -> Store {
        Store::connect(&self.settings.redis)
            .await
            .expect("connect to redis")
    }

    /// Applies every accepted event now (what the worker's applier does within a moment;
    /// an app without the worker role has none): then visits, presence and unique visitors
    /// include them. `tests/trailing.rs` checks that the worker does it by itself.
    pub async fn settled(&self) {
        self.store()
            .await
            .apply_all(&self.settings.tracking, self.clock.now_ms())
            .await
            .expect("apply the accepted events");
    }

    /// A ClickHouse handle on this app's database.
    pub fn db(&self) -> Db {
        Db::new(&self.settings.clickhouse)
    }

    /// Shuts down gracefully and waits for the app to finish.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("app task").expect("app ran");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
