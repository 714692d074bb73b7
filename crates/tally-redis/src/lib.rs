//! # tally-redis
//!
//! The live tier. This crate is the only code that names Redis keys (see [`keys`] for the
//! table of every key) or talks to Redis:
//!
//! - [`Store::record`]: the beacon's write — one round trip per batch: a transaction, or
//!   the accept script (retries, sites near their page cap, a cluster: one call per slot).
//! - [`Store::apply`]: the worker's applier — a run of accepted batches at a time, committed
//!   as a transaction guarded by a `WATCH` (`watch.rs`), or on a cluster by a script.
//! - [`Store::counters`] / [`Store::page_views`]: live public counters, one round trip.
//! - [`stream`]: the worker's side — consumer groups, reads, reclaims, acks, dead letters.
//! - [`Store::salt`]: the visitor-id salt of a local day; [`Store::rewrite_aof_once`]
//!   clears expired salts from the append-only file.

mod apply;
mod directory;
pub mod handoff;
pub mod keys;
mod read;
mod sentinel;
pub mod stream;
mod tls;
mod watch;
pub mod wire;
mod write;

use std::time::Duration;

use redis::Value;
use redis::{
    aio::{ConnectionManager, ConnectionManagerConfig},
    cluster::ClusterClientBuilder,
    cluster_async::ClusterConnection,
};
use tally_core::settings::RedisSettings;

pub use apply::{APPLY_LIMITS, Applied};
pub use handoff::Handoff;
pub use keys::Keys;
pub use read::{Counters, REALTIME_CANDIDATES, Realtime, RealtimeView};
pub use write::{Attempt, Recorded, TrackedEvent};

/// Errors from the live tier.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis returned an unexpected reply: {0}")]
    Reply(String),
    /// A TLS setting that cannot be used, or a server certificate that is not trusted; the
    /// message names the setting.
    #[error("{0}")]
    Tls(String),
}

impl From<redis::ParsingError> for Error {
    fn from(e: redis::ParsingError) -> Self {
        Self::Reply(e.to_string())
    }
}

impl tally_core::retry::Classify for Error {
    /// Retry: Redis down, restarting, timed out, failing over, or full (`OOM`: memory frees
    /// as the workers empty the streams), also when it refused a transaction for it as it
    /// queued the commands. Stop: Redis refuses Tally's credentials or
    /// permissions. Give up: anything else (a script error, a key of the wrong type) fails
    /// the same way again for this data.
    fn verdict(&self) -> tally_core::retry::Verdict {
        use tally_core::retry::Verdict;
        let Self::Redis(e) = self else {
            return Verdict::GiveUp;
        };
        if e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_cluster_error()
        {
            return Verdict::Retry;
        }
        // A transaction Redis refused as it queued it (full, read-only, loading): the first
        // of its commands' errors says why. Nothing of it ran.
        let queued = (e.code() == Some("EXECABORT"))
            .then(|| e.clone().into_server_errors())
            .flatten();
        let code = match queued.as_deref() {
            Some([(_, first), ..]) => Some(first.code()),
            _ => e.code(),
        };
        match code {
            Some(
                "LOADING" | "BUSY" | "TRYAGAIN" | "MASTERDOWN" | "OOM" | "READONLY" | "CLUSTERDOWN"
                | "NOREPLICAS",
            ) => Verdict::Retry,
            Some("NOAUTH" | "WRONGPASS" | "NOPERM") => Verdict::Stop,
            _ => Verdict::GiveUp,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A connection to one Redis server or to a Redis Cluster.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(sentinel::Primary),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
            Self::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
            Self::Sentinel(c) => c.get_db(),
        }
    }
}

/// The timeouts of a plain connection to one server (the primary the sentinels name, or
/// one of the applier's own, `watch.rs`): 2 s to connect, 5 s for an answer.
pub(crate) fn connection_config() -> redis::AsyncConnectionConfig {
    redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)))
}

/// A handle on Redis, cheap to clone: one multiplexed connection that reconnects by itself,
/// or a cluster connection that follows the slots. Every pipeline this crate sends stays
/// within one partition, so within one cluster slot; only [`Store::record`] spans
/// partitions, and it sends one call per partition to a cluster.
#[derive(Clone)]
pub struct Store {
    conn: Conn,
    partitions: u16,
    /// Applied events for this process' own store step (see [`handoff`]), when
    /// [`Store::with_handoff`] gave it one.
    handoff: Option<Handoff>,
    /// The capped hashes' sizes as the beacon's calls last read them (see [`write`]).
    capped_sizes: std::sync::Arc<write::CappedSizes>,
    /// Connections for the applier's transactions; none on a cluster, where it commits with
    /// its script (see `apply.rs`).
    watcher: Option<std::sync::Arc<watch::Watcher>>,
}

impl Store {
    /// Connects to `url`. Fails when Redis cannot be reached now; afterwards the handle
    /// reconnects by itself and calls fail fast while Redis is down.
    pub async fn connect(settings: &RedisSettings) -> Result<Self> {
        let certs = tls::certificates(settings)?;
        let mut watcher = None;
        let conn = if !settings.sentinels.is_empty() {
            let primary = sentinel::Primary::connect(settings).await?;
            watcher = Some(watch::Target::Sentinel(primary.clone()));
            Conn::Sentinel(primary)
        } else if settings.cluster {
            let mut builder = ClusterClientBuilder::new(settings.nodes())
                .connection_timeout(Duration::from_secs(2))
                .response_timeout(Duration::from_secs(5))
                .retries(2);
            if let Some(certs) = certs {
                builder = builder.certs(certs);
            }
            let client = builder.build()?;
            Conn::Cluster(
                client
                    .get_async_connection()
                    .await
                    .map_err(|e| tls::explain(settings, e))?,
            )
        } else {
            let url = settings.nodes()[0];
            let client = match certs {
                Some(certs) => redis::Client::build_with_tls(url, certs)?,
                None => redis::Client::open(url)?,
            };
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(Duration::from_secs(5)))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(500));
            watcher = Some(watch::Target::Server(Box::new(client.clone())));
            Conn::Single(
                ConnectionManager::new_with_config(client, config)
                    .await
                    .map_err(|e| tls::explain(settings, e))?,
            )
        };
        Ok(Self {
            conn,
            partitions: settings.partitions,
            handoff: None,
            capped_sizes: Default::default(),
            watcher: watcher.map(|target| std::sync::Arc::new(watch::Watcher::new(target))),
        })
    }

    /// This handle with `handoff`: the events its applies parse are left there, and its
    /// stream reads take them from there rather than from Redis (see [`handoff`]). For a
    /// process that both applies and stores a partition, the worker: every handle it uses
    /// gets the same one.
    pub fn with_handoff(mut self, handoff: Handoff) -> Self {
        self.handoff = Some(handoff);
        self
    }

    /// This handle, committing every apply with the commit script, as on a cluster, instead
    /// of a transaction (tests compare the two).
    pub fn with_script_commits(mut self) -> Self {
        self.watcher = None;
        self
    }

    /// Whether this handle talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.conn, Conn::Cluster(_))
    }

    /// Number of partitions events are spread over.
    pub fn partitions(&self) -> u16 {
        self.partitions
    }

    /// `PING`, for readiness checks.
    pub async fn ping(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }

    /// Memory Redis uses and may use: `used_memory` and `maxmemory` of `INFO memory` (0 =
    /// no limit). On a cluster, the node nearest its limit.
    pub async fn memory(&self) -> Result<Memory> {
        let mut conn = self.conn.clone();
        let reply: Value = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut conn)
            .await?;
        // One node answers with text; a cluster with the text of each node.
        let mut texts = Vec::new();
        collect_text(reply, &mut texts);
        texts
            .iter()
            .filter_map(|t| Memory::parse(t))
            .max_by(|a, b| a.ratio().total_cmp(&b.ratio()))
            .ok_or_else(|| Error::Reply("INFO memory without used_memory".into()))
    }

    /// The visitor-id salt of local day `day` (`YYYYMMDD`), created if absent with the
    /// given time to live: it expires once `day` has ended in every time zone, and no one
    /// can recompute that day's ids after.
    pub async fn salt(&self, day: &str, ttl: Duration) -> Result<[u8; 16]> {
        let mut conn = self.conn.clone();
        let fresh: [u8; 16] = rand_salt();
        let (current,): (Vec<u8>,) = redis::pipe()
            .cmd("SET")
            .arg(keys::salt(day))
            .arg(&fresh[..])
            .arg("NX")
            .arg("EX")
            .arg(ttl.as_secs().max(1))
            .ignore()
            .cmd("GET")
            .arg(keys::salt(day))
            .query_async(&mut conn)
            .await?;
        current
            .try_into()
            .map_err(|_| Error::Reply(format!("salt of {day} is not 16 bytes")))
    }

    /// Rewrites the append-only file once per `marker` (a day) among every process that
    /// asks, so the salts that expired are gone from the persistence files too (an AOF keeps
    /// a deleted key's value until it is rewritten). Does nothing when AOF is off. Answers
    /// whether this call started a rewrite.
    pub async fn rewrite_aof_once(&self, marker: &str) -> Result<bool> {
        let mut conn = self.conn.clone();
        let info: String = redis::cmd("INFO")
            .arg("persistence")
            .query_async(&mut conn)
            .await?;
        if !info.lines().any(|l| l.trim() == "aof_enabled:1") {
            return Ok(false);
        }
        let first: bool = redis::cmd("SET")
            .arg(keys::aof_rewrite(marker))
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(3 * 86_400)
            .query_async::<Option<String>>(&mut conn)
            .await?
            .is_some();
        if first {
            let _: redis::Value = redis::cmd("BGREWRITEAOF").query_async(&mut conn).await?;
        }
        Ok(first)
    }

    pub(crate) fn conn(&self) -> Conn {
        self.conn.clone()
    }
}

fn rand_salt() -> [u8; 16] {
    rand::random()
}

impl Store {
    /// Stores the admin session known by `id` (the hash of its cookie value) → `value` for
    /// `ttl`.
    pub async fn session_put(&self, id: &str, value: &str, ttl: Duration) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: () = redis::cmd("SET")
            .arg(keys::admin_session(id))
            .arg(value)
            .arg("EX")
            .arg(ttl.as_secs().max(1))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// The value of admin session `id`, extending its life by `ttl`; `None` if expired.
    pub async fn session_touch(&self, id: &str, ttl: Duration) -> Result<Option<String>> {
        let mut conn = self.conn.clone();
        let (value, _): (Option<String>, i64) = redis::pipe()
            .cmd("GET")
            .arg(keys::admin_session(id))
            .cmd("EXPIRE")
            .arg(keys::admin_session(id))
            .arg(ttl.as_secs().max(1))
            .query_async(&mut conn)
            .await?;
        Ok(value)
    }

    /// Ends admin session `id`.
    pub async fn session_delete(&self, id: &str) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: i64 = redis::cmd("DEL")
            .arg(keys::admin_session(id))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }
}

/// Memory of a Redis server, from `INFO memory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// `used_memory`, bytes.
    pub used: u64,
    /// `maxmemory`, bytes; 0 when Redis has no limit.
    pub max: u64,
}

impl Memory {
    fn parse(info: &str) -> Option<Self> {
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        Some(Self {
            used: field("used_memory")?,
            max: field("maxmemory").unwrap_or(0),
        })
    }

    /// Used memory as a share of `maxmemory` (0 without a limit).
    pub fn ratio(&self) -> f64 {
        if self.max == 0 {
            0.0
        } else {
            self.used as f64 / self.max as f64
        }
    }
}

/// Every text in a reply (a string, or the strings of a map or array of them).
fn collect_text(v: Value, out: &mut Vec<String>) {
    match v {
        Value::BulkString(b) => out.push(String::from_utf8_lossy(&b).into_owned()),
        Value::SimpleString(s) => out.push(s),
        Value::VerbatimString { text, .. } => out.push(text),
        Value::Array(items) | Value::Set(items) => {
            for item in items {
                collect_text(item, out);
            }
        }
        Value::Map(pairs) => {
            for (_, item) in pairs {
                collect_text(item, out);
            }
        }
        _ => {}
    }
}

impl Store {
    /// Remembers session `key` (its storage key) among those of `owner` (`person:NAME`,
    /// `share:ID`), for `max_age`.
    pub async fn owned_session_add(&self, owner: &str, key: &str, max_age: Duration) -> Result<()> {
        let set = keys::sessions_of(owner);
        let mut conn = self.conn.clone();
        let _: () = redis::pipe()
            .cmd("SADD")
            .arg(&set)
            .arg(key)
            .ignore()
            .cmd("EXPIRE")
            .arg(&set)
            .arg(max_age.as_secs().max(1))
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Ends every session of `owner`; returns how many there were.
    pub async fn owned_sessions_end(&self, owner: &str) -> Result<u64> {
        let set = keys::sessions_of(owner);
        let mut conn = self.conn.clone();
        let sessions: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&set)
            .query_async(&mut conn)
            .await?;
        let mut ended = 0;
        // One key at a time: on a cluster the sessions live in different slots.
        for key in &sessions {
            let n: u64 = redis::cmd("DEL")
                .arg(keys::admin_session(key))
                .query_async(&mut conn)
                .await?;
            ended += n;
        }
        let _: u64 = redis::cmd("DEL").arg(&set).query_async(&mut conn).await?;
        Ok(ended)
    }
}
