//! Redis Sentinel: the primary is the server the sentinels name for `redis.master_name`.
//! After a failover the old primary is gone or has become a replica (it answers writes with
//! `READONLY`): a command that fails so drops the connection, and the next one asks the
//! sentinels again. Callers retry such errors as they retry a Redis that is down (the
//! beacon keeps the events in its buffer, the worker backs off), so they recover without a
//! restart.

use std::sync::Arc;

use redis::{
    IntoConnectionInfo, RedisFuture, Value,
    aio::{ConnectionLike, MultiplexedConnection},
    sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType},
};
use tally_core::settings::RedisSettings;
use tokio::sync::Mutex;

use crate::Result;

/// The current primary, found through the sentinels; cheap to clone.
#[derive(Clone)]
pub(crate) struct Primary {
    inner: Arc<Mutex<State>>,
    db: i64,
}

struct State {
    sentinels: SentinelClient,
    conn: Option<MultiplexedConnection>,
}

impl Primary {
    /// Asks the sentinels for the primary and connects to it.
    pub(crate) async fn connect(settings: &RedisSettings) -> Result<Self> {
        let primary = settings.nodes()[0].into_connection_info()?;
        let db = primary.redis_settings().db();
        let mut node = SentinelNodeConnectionInfo::default()
            .set_redis_connection_info(primary.redis_settings().clone());
        if settings.nodes()[0].starts_with("rediss://") {
            node = node.set_tls_mode(redis::TlsMode::Secure);
        }
        let sentinels = SentinelClient::build(
            settings.sentinels.iter().map(String::as_str).collect(),
            settings.master_name.as_str(),
            Some(node),
            SentinelServerType::Master,
        )?;
        let this = Self {
            inner: Arc::new(Mutex::new(State {
                sentinels,
                conn: None,
            })),
            db,
        };
        this.current().await?;
        Ok(this)
    }

    /// The connection to the primary, made when there is none.
    async fn current(&self) -> redis::RedisResult<MultiplexedConnection> {
        let mut state = self.inner.lock().await;
        if let Some(conn) = &state.conn {
            return Ok(conn.clone());
        }
        let conn = state.connect().await?;
        state.conn = Some(conn.clone());
        Ok(conn)
    }

    /// A connection of its own to the primary the sentinels name now (see `watch.rs`).
    pub(crate) async fn dedicated(&self) -> redis::RedisResult<MultiplexedConnection> {
        self.inner.lock().await.connect().await
    }

    /// Drops the connection after `e` when it means the primary is gone or is one no more.
    async fn after<T>(&self, result: redis::RedisResult<T>) -> redis::RedisResult<T> {
        if let Err(e) = &result {
            let moved = e.is_io_error()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_timeout()
                || matches!(e.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"));
            if moved {
                self.inner.lock().await.conn = None;
            }
        }
        result
    }
}

impl State {
    /// A new connection to the primary the sentinels name now. Not finding one (no sentinel
    /// answers, or they name no primary during a failover) is an I/O error to the callers:
    /// it passes, and they retry it as they retry a Redis that is down.
    async fn connect(&mut self) -> redis::RedisResult<MultiplexedConnection> {
        let client = self.sentinels.async_get_client().await.map_err(|e| {
            redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                format!("no primary named by the sentinels: {e}"),
            ))
        })?;
        let conn = client
            .get_multiplexed_async_connection_with_config(&crate::connection_config())
            .await?;
        tracing::info!(
            primary = %client.get_connection_info().addr(),
            "connected to the primary the sentinels name"
        );
        Ok(conn)
    }
}

impl ConnectionLike for Primary {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let result = match self.current().await {
                Ok(mut conn) => conn.req_packed_command(cmd).await,
                Err(e) => Err(e),
            };
            self.after(result).await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let result = match self.current().await {
                Ok(mut conn) => conn.req_packed_commands(pipeline, offset, count).await,
                Err(e) => Err(e),
            };
            self.after(result).await
        })
    }

    fn get_db(&self) -> i64 {
        self.db
    }
}
