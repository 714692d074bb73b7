//! The command line: `tally serve | migrate | config`, each with the global `--config FILE`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tally_core::{Settings, SiteId};
use tokio_util::sync::CancellationToken;

use crate::{App, Roles};

#[derive(Debug, Parser)]
#[command(name = "tally", version, about = "Self-hosted visit analytics")]
pub struct Cli {
    /// Configuration file (TOML). Without it, only the built-in defaults and TALLY__*
    /// environment variables apply.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the beacon, worker and api roles (all by default).
    Serve {
        /// Comma-separated roles to run: beacon, worker, api.
        #[arg(long, default_value = "beacon,worker,api")]
        roles: Roles,
    },
    /// Create the ClickHouse database and apply pending migrations.
    Migrate,
    /// Print the effective configuration, secrets masked.
    Config,
    /// Benchmarks (see scripts/bench).
    #[command(subcommand, hide = true)]
    Bench(BenchCommand),
    /// Restore the live counters in Redis from ClickHouse and the streams (after a Redis loss).
    RebuildCounters {
        /// Only this site (default: every configured site).
        #[arg(long)]
        site: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Worker drain rate from pre-filled streams, against a plain batch insert.
    Drain {
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
    },
}

impl Cli {
    /// Loads the settings: `--config`, else `config/tally.toml` if it exists, else defaults.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let default = PathBuf::from("config/tally.toml");
        let path = match &self.config {
            Some(p) => Some(p.clone()),
            None => default.exists().then_some(default),
        };
        Settings::load(path.as_deref(), std::env::vars()).context("invalid configuration")
    }

    pub async fn run(self) -> anyhow::Result<()> {
        let settings = self.settings()?;
        match self.command {
            Command::Serve { roles } => {
                let app = App::build(settings, roles).await?;
                let shutdown = CancellationToken::new();
                tokio::spawn(signal(shutdown.clone()));
                app.run(shutdown).await
            }
            Command::Migrate => {
                let db = tally_clickhouse::Db::new(&settings.clickhouse);
                let applied = db.migrate().await.context("migration failed")?;
                let version = db.version().await?;
                println!(
                    "ClickHouse {version}, database `{}`: applied {} migration(s) {:?}",
                    db.database(),
                    applied.len(),
                    applied
                );
                Ok(())
            }
            Command::Config => {
                print!("{}", settings.to_redacted_toml());
                Ok(())
            }
            Command::Bench(BenchCommand::Drain { events }) => {
                let r = crate::bench::drain(&settings, events).await?;
                println!(
                    "drain events={} prefill_s={:.2} drain_s={:.2} drain_rate={:.0} plain_s={:.2} plain_rate={:.0} ratio={:.2}",
                    r.events,
                    r.prefill.as_secs_f64(),
                    r.drain.as_secs_f64(),
                    r.drain_rate(),
                    r.plain_insert.as_secs_f64(),
                    r.plain_rate(),
                    r.drain_rate() / r.plain_rate()
                );
                Ok(())
            }
            Command::RebuildCounters { site } => {
                let site = match site {
                    Some(s) => {
                        let id =
                            SiteId::parse(&s).map_err(|e| anyhow::anyhow!("--site {s:?}: {e}"))?;
                        anyhow::ensure!(
                            settings.site(id.as_str()).is_some(),
                            "site `{id}` is not configured"
                        );
                        Some(id)
                    }
                    None => None,
                };
                for r in crate::rebuild::rebuild_counters(&settings, site.as_ref()).await? {
                    println!(
                        "{}: {} pages, {} views, {} visits, {} bots ({} events from the streams)",
                        r.site, r.pages, r.views, r.visits, r.bots, r.from_streams
                    );
                }
                Ok(())
            }
        }
    }
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
async fn signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutdown requested");
    shutdown.cancel();
}
