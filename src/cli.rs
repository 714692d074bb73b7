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
    /// Configuration file (TOML; also from TALLY_CONFIG). Without it, config/tally.toml if
    /// it exists, else only the built-in defaults and TALLY__* environment variables apply
    /// (and those have no site).
    #[arg(long, global = true, value_name = "FILE", env = "TALLY_CONFIG")]
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
    /// Import a site's existing counters as its baseline: per-page views (CSV
    /// `page,views[,title]`, header optional) and/or download totals (`--downloads`, CSV
    /// `url,downloads`); running it again replaces the previous import of the same kind.
    ImportCounters {
        #[arg(long)]
        site: String,
        /// The CSV file of pages: `page,views[,title]`.
        #[arg(required_unless_present = "downloads")]
        file: Option<std::path::PathBuf>,
        /// A CSV file of download totals, `url,downloads`: what the public download counters
        /// add to the tracked downloads (replaces the previous download import).
        #[arg(long)]
        downloads: Option<std::path::PathBuf>,
        /// Site-wide total views to carry over (default: the sum of the pages).
        #[arg(long)]
        total_views: Option<u64>,
        /// Site-wide total visits to carry over (default: 0).
        #[arg(long)]
        total_visits: Option<u64>,
    },
    /// Export a site's per-page totals (live + imported) as CSV `page,views,title`.
    Export {
        #[arg(long)]
        site: String,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Drop raw events older than `retention.raw_days` now (the worker also does it hourly).
    Retention,
    /// Send realistic tracking traffic to a running Tally and report what happened.
    Loadgen {
        /// Base URL of the Tally to load.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        target: String,
        /// Site and its host, `ID=HOST` (repeatable). Default: every configured site with its
        /// first domain.
        #[arg(long = "site", value_name = "ID=HOST")]
        sites: Vec<String>,
        /// Pages per site (popularity is Zipf-like).
        #[arg(long, default_value_t = 5000)]
        pages: u64,
        /// Concurrent connections.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Target requests per second in total (default: as fast as possible).
        #[arg(long)]
        rate: Option<u64>,
        /// How long to run, e.g. 30s.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
    },
    /// Benchmarks (see scripts/bench).
    #[command(subcommand, hide = true)]
    Bench(BenchCommand),
    /// Restore the live counters in Redis from ClickHouse and the streams (after a Redis loss).
    RebuildCounters {
        /// Only this site (default: every configured site).
        #[arg(long)]
        site: Option<String>,
    },
    /// Events the worker could not store (ClickHouse refused them, or they could not be read).
    #[command(subcommand)]
    DeadLetters(DeadLettersCommand),
    /// People who sign in to the admin pages.
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a person: prints a one-time link to set their password (valid 7 days), or, with
    /// --password-stdin, takes the password from the first line of standard input.
    Add {
        /// Login name: a-z, 0-9, `.`, `_` and `-`.
        name: String,
        /// An owner: every site, and people (the first person must be one).
        #[arg(long, conflicts_with = "role")]
        owner: bool,
        /// admin (edits its sites) or viewer (reads them).
        #[arg(long)]
        role: Option<String>,
        /// A site of an admin or viewer (repeatable).
        #[arg(long = "site")]
        sites: Vec<String>,
        /// Read the password from standard input instead of printing a link.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// Print every dead letter as one JSON line (partition, id, event_key, reason, and the
    /// event with its figures, or `raw` when it is no event).
    List,
    /// Send dead letters through the worker again (each once) and delete them; those that
    /// still are no event stay.
    Replay {
        /// Only this dead letter (repeatable; the `id` that `list` prints). Default: all.
        #[arg(long)]
        id: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Time from an accepted view to its row in ClickHouse, at a steady rate.
    Freshness {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        target: String,
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
    },
    /// Insert a generated history of page views into ClickHouse.
    SeedHistory {
        #[arg(long, default_value_t = 10_000_000)]
        events: usize,
        #[arg(long, default_value_t = 90)]
        days: u32,
    },
    /// Time the admin queries over the seeded history.
    Queries {
        #[arg(long, default_value_t = 40)]
        rounds: usize,
    },
    /// Time the realtime read of a site with PAGES pages being read (seeded into Redis).
    Realtime {
        #[arg(long, default_value_t = 50_000)]
        pages: usize,
        #[arg(long, default_value_t = 50)]
        rounds: usize,
    },
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
            Command::Migrate => migrate(&settings).await,
            Command::Config => {
                print!("{}", settings.to_redacted_toml());
                Ok(())
            }
            Command::Loadgen {
                target,
                sites,
                pages,
                connections,
                rate,
                duration,
            } => {
                let spec = crate::loadgen::LoadSpec {
                    target,
                    sites: loadgen_sites(&settings, &sites)?,
                    pages,
                    connections,
                    rate,
                    duration,
                    progress: true,
                };
                println!("{}", crate::loadgen::run(spec).await?);
                Ok(())
            }
            Command::Bench(command) => bench(&settings, command).await,
            Command::ImportCounters {
                site,
                file,
                downloads,
                total_views,
                total_visits,
            } => {
                let site = configured_site(&settings, &site)?;
                if let Some(file) = file {
                    let b = crate::import::import_counters(
                        &settings,
                        &site,
                        &file,
                        total_views,
                        total_visits,
                        true,
                    )
                    .await?;
                    println!(
                        "{site}: imported {} pages, total views {}, total visits {}",
                        b.pages.len(),
                        b.total_views,
                        b.total_visits
                    );
                }
                if let Some(file) = downloads {
                    let files =
                        crate::import::import_downloads(&settings, &site, &file, true).await?;
                    let total: u64 = files.iter().map(|(_, n)| n).sum();
                    println!(
                        "{site}: imported the downloads of {} files, {total} in all",
                        files.len()
                    );
                }
                Ok(())
            }
            Command::Export { site, out } => export(&settings, &site, out).await,
            Command::Retention => retention(&settings).await,
            Command::DeadLetters(command) => dead_letters(&settings, command).await,
            Command::RebuildCounters { site } => rebuild_counters(&settings, site).await,
            Command::User(command) => user(&settings, command).await,
        }
    }
}

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let db = tally_clickhouse::Db::new(&settings.clickhouse);
    let applied = db
        .migrate(&settings.sites)
        .await
        .context("migration failed")?;
    let version = db.version().await?;
    println!(
        "ClickHouse {version}, database `{}`: applied {} migration(s) {:?}",
        db.database(),
        applied.len(),
        applied
    );
    Ok(())
}

/// The sites `tally loadgen` sends to: `--site ID=HOST` each, or every configured site with
/// its first domain.
fn loadgen_sites(settings: &Settings, given: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    if given.is_empty() {
        return Ok(settings
            .sites
            .iter()
            .map(|s| (s.id.to_string(), s.domains[0].clone()))
            .collect());
    }
    given
        .iter()
        .map(|s| {
            s.split_once('=')
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .ok_or_else(|| anyhow::anyhow!("--site {s:?}: write ID=HOST"))
        })
        .collect()
}

async fn bench(settings: &Settings, command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Freshness {
            target,
            rate,
            duration,
        } => {
            let site = &settings.sites[0];
            let f = crate::bench::freshness(
                settings,
                &target,
                site.id.as_str(),
                &site.domains[0],
                rate,
                duration,
            )
            .await?;
            let ((p50, p99), (t50, t99)) = (f.stored, f.trailing);
            println!(
                "freshness views={} rate={rate} p50_ms={p50:.0} p99_ms={p99:.0} \
                 trailing_p50_ms={t50:.0} trailing_p99_ms={t99:.0}",
                f.views
            );
        }
        BenchCommand::SeedHistory { events, days } => {
            let took = crate::bench::seed_history(settings, events, days).await?;
            println!(
                "seed-history events={events} days={days} seconds={:.1} rows_per_s={:.0}",
                took.as_secs_f64(),
                events as f64 / took.as_secs_f64()
            );
        }
        BenchCommand::Queries { rounds } => {
            for (name, p50, p99) in crate::bench::admin_queries(settings, rounds).await? {
                println!("query {name:<28} p50_ms={p50:.1} p99_ms={p99:.1}");
            }
        }
        BenchCommand::Realtime { pages, rounds } => {
            for (name, p50, p99) in crate::bench::realtime(settings, pages, rounds).await? {
                println!("{name:<40} p50_ms={p50:.2} p99_ms={p99:.2}");
            }
        }
        BenchCommand::Drain { events } => {
            let r = crate::bench::drain(settings, events).await?;
            println!(
                "drain events={} prefill_s={:.2} drain_s={:.2} drain_rate={:.0} worker_us_per_event={:.2} plain_s={:.2} plain_rate={:.0} ratio={:.2}",
                r.events,
                r.prefill.as_secs_f64(),
                r.drain.as_secs_f64(),
                r.drain_rate(),
                r.worker_us_per_event(),
                r.plain_insert.as_secs_f64(),
                r.plain_rate(),
                r.drain_rate() / r.plain_rate()
            );
        }
    }
    Ok(())
}

async fn export(settings: &Settings, site: &str, out: Option<PathBuf>) -> anyhow::Result<()> {
    let site = configured_site(settings, site)?;
    let n = match out {
        Some(path) => {
            let mut f = std::fs::File::create(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            crate::import::export(settings, &site, &mut f).await?
        }
        None => crate::import::export(settings, &site, &mut std::io::stdout().lock()).await?,
    };
    eprintln!("{site}: exported {n} pages");
    Ok(())
}

async fn retention(settings: &Settings) -> anyhow::Result<()> {
    let Some(cutoff) = tally_worker::retention_cutoff(&settings.retention) else {
        println!("retention.raw_days = 0: raw events are kept forever");
        return Ok(());
    };
    let db = tally_clickhouse::Db::new(&settings.clickhouse);
    let dropped = db.drop_raw_before(cutoff).await?;
    println!("dropped raw partitions {dropped:?} (rows before {cutoff}); rollups kept");
    Ok(())
}

async fn user(settings: &Settings, command: UserCommand) -> anyhow::Result<()> {
    let UserCommand::Add {
        name,
        owner,
        role,
        sites,
        password_stdin,
    } = command;
    let role = if owner {
        "owner".to_owned()
    } else {
        role.ok_or_else(|| anyhow::anyhow!("give --owner or --role admin|viewer"))?
    };
    let password = if password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        Some(line.trim_end_matches(['\r', '\n']).to_owned())
    } else {
        None
    };
    let db = tally_clickhouse::Db::new(&settings.clickhouse);
    db.migrate(&settings.sites)
        .await
        .context("cannot migrate ClickHouse")?;
    let secret = tally_api::add_person(&db, &name, &role, sites, password)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    match secret {
        Some(secret) => {
            let base = match settings.server.public_url.trim_end_matches('/') {
                "" => format!("http://{}", settings.server.listen),
                url => url.to_owned(),
            };
            println!("{base}/admin/invite/{secret}");
            eprintln!(
                "{name} ({role}) added: open the link above (once, within 7 days) to set a password"
            );
        }
        None => eprintln!("{name} ({role}) added; they can sign in"),
    }
    Ok(())
}

async fn dead_letters(settings: &Settings, command: DeadLettersCommand) -> anyhow::Result<()> {
    match command {
        DeadLettersCommand::List => {
            let (_, letters) = crate::dead_letters::all(settings).await?;
            for (partition, letter) in &letters {
                println!("{}", crate::dead_letters::line(*partition, letter));
            }
            eprintln!("{} dead letters", letters.len());
            Ok(())
        }
        DeadLettersCommand::Replay { id } => {
            let r = crate::dead_letters::replay(settings, &id).await?;
            for (id, why) in &r.left {
                eprintln!("{id}: left: {why}");
            }
            println!(
                "replayed {} dead letters; {} left",
                r.replayed,
                r.left.len()
            );
            anyhow::ensure!(
                r.left.is_empty(),
                "{} dead letters could not be replayed",
                r.left.len()
            );
            Ok(())
        }
    }
}

async fn rebuild_counters(settings: &Settings, site: Option<String>) -> anyhow::Result<()> {
    let site = site.map(|s| configured_site(settings, &s)).transpose()?;
    for r in crate::rebuild::rebuild_counters(settings, site.as_ref()).await? {
        println!(
            "{}: {} pages, {} views, {} visits, {} bots ({} events from the streams)",
            r.site, r.pages, r.views, r.visits, r.bots, r.from_streams
        );
    }
    Ok(())
}

/// `s` as the id of a configured site, or an error saying why not.
fn configured_site(settings: &Settings, s: &str) -> anyhow::Result<SiteId> {
    let id = SiteId::parse(s).map_err(|e| anyhow::anyhow!("--site {s:?}: {e}"))?;
    anyhow::ensure!(
        settings.site(id.as_str()).is_some(),
        "site `{id}` is not configured"
    );
    Ok(id)
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
