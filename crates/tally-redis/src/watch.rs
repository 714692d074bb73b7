//! Connections of their own for optimistic transactions (`WATCH` … `MULTI` … `EXEC`).
//!
//! A `WATCH` belongs to the connection that sent it, so the shared multiplexed connection
//! cannot carry one: another task's `EXEC` on it would end it, and a reconnect would drop it
//! without a word, leaving the `EXEC` unguarded. A [`Watcher`] hands out connections that
//! never reconnect: one is taken for a transaction and given back only when it ended
//! cleanly (`EXEC` answered, or `UNWATCH`). A transaction that fails, or whose future is
//! dropped half-way, drops its connection, and its `WATCH` goes with it; the next one opens
//! a fresh connection. A process holds as many as it runs transactions at once (one per
//! partition being applied).

use std::sync::Mutex;

use redis::aio::MultiplexedConnection;

use crate::{Result, sentinel};

/// Where fresh connections go.
#[derive(Clone)]
pub(crate) enum Target {
    /// One server.
    Server(Box<redis::Client>),
    /// The primary the sentinels name now.
    Sentinel(sentinel::Primary),
}

/// Connections for transactions, idle ones kept for the next.
pub(crate) struct Watcher {
    target: Target,
    idle: Mutex<Vec<MultiplexedConnection>>,
}

impl Watcher {
    pub(crate) fn new(target: Target) -> Self {
        Self {
            target,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// A connection no one else uses, with no `WATCH` on it.
    pub(crate) async fn take(&self) -> Result<MultiplexedConnection> {
        if let Some(conn) = self.idle.lock().expect("watcher lock").pop() {
            return Ok(conn);
        }
        let conn = match &self.target {
            Target::Server(client) => {
                client
                    .get_multiplexed_async_connection_with_config(&crate::connection_config())
                    .await?
            }
            Target::Sentinel(primary) => primary.dedicated().await?,
        };
        Ok(conn)
    }

    /// Gives back a connection whose transaction ended cleanly (nothing watched on it).
    pub(crate) fn give_back(&self, conn: MultiplexedConnection) {
        self.idle.lock().expect("watcher lock").push(conn);
    }
}
