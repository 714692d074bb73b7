//! Tally on a ClickHouse cluster (`clickhouse.cluster`): each table of the one-server schema
//! becomes a replicated `X_local` table on every node plus a Distributed table `X` over
//! them, sharded by site, so every statement that reads or writes `X` stays as it is.
//!
//! Migrations are written for one server; [`Cluster::rewrite`] turns each statement into
//! its cluster form, run `ON CLUSTER` (ClickHouse's distributed DDL, through ZooKeeper):
//!
//! | one server | cluster |
//! |---|---|
//! | `CREATE TABLE X (…) ENGINE = E(args) …` | `X` Distributed(cluster, db, X_local, sipHash64(site)) — `rand()` for a table without `site` — and `X_local` ReplicatedE('/clickhouse/tables/{shard}/db/X_local', '{replica}', args); `Log` becomes ReplicatedMergeTree ordered by `tuple()` |
//! | `CREATE MATERIALIZED VIEW V TO T AS SELECT … FROM S` | on every node, `TO T_local` reading `S_local`: each replica rolls up what is inserted into it |
//! | `ALTER TABLE X …` | on `X_local`, then `X` made again over the new columns (18.16 cannot alter a Distributed table) |
//! | `DROP TABLE X` | `X` and `X_local` |
//!
//! All of a site's rows live on one shard, so a subquery over a site's rows can run on each
//! shard against its local tables (`distributed_product_mode = 'local'`).

use crate::{Db, migrate::already_done};

/// The settings of every statement on a cluster: inserts wait until the shards hold the rows
/// (the worker acknowledges a batch only then); reads and writes go to the first healthy
/// replica of each shard in the servers' order, so a row written is read back at once; a
/// replica lagging more than a few seconds is read only if no other answers; subqueries
/// over a site's rows run on each shard's local tables.
pub(crate) const SETTINGS: [(&str, &str); 4] = [
    ("insert_distributed_sync", "1"),
    ("load_balancing", "in_order"),
    ("max_replica_delay_for_distributed_queries", "5"),
    ("distributed_product_mode", "local"),
];

/// One step of a statement's cluster form.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// A statement to run as it is.
    Sql(String),
    /// Make the Distributed table `X` again over `X_local` (after an ALTER of `X_local`).
    Redistribute(String),
}

/// The cluster and the database Tally's tables are in (both validated identifiers).
#[derive(Debug, Clone)]
pub(crate) struct Cluster {
    pub(crate) name: String,
    pub(crate) database: String,
}

impl Cluster {
    /// The cluster form of one migration statement (see the module's table), or an error
    /// naming what it cannot turn.
    pub(crate) fn rewrite(&self, statement: &str) -> Result<Vec<Step>, String> {
        let sql = without_comment_lines(statement);
        let (db, on) = (&self.database, format!("ON CLUSTER {}", self.name));
        if let Some(rest) = sql.strip_prefix("CREATE TABLE ") {
            let (if_not_exists, rest) = match rest.strip_prefix("IF NOT EXISTS ") {
                Some(r) => ("IF NOT EXISTS ", r),
                None => ("", rest),
            };
            let (name, rest) = identifier(rest).ok_or("a table name")?;
            let rest = rest.trim_start();
            if !rest.starts_with('(') {
                return Err(format!("CREATE TABLE {name} without its columns"));
            }
            let columns_end = closing_paren(rest).ok_or("the column list's end")?;
            let columns = &rest[..=columns_end];
            let after = rest[columns_end + 1..].trim_start();
            let engine_text = after
                .strip_prefix("ENGINE = ")
                .ok_or("`ENGINE = ` after the columns")?;
            let (engine, tail) = identifier(engine_text).ok_or("an engine")?;
            let (args, tail) = match tail.strip_prefix('(') {
                Some(_) => {
                    let end = closing_paren(tail).ok_or("the engine's arguments")?;
                    (&tail[1..end], &tail[end + 1..])
                }
                None => ("", tail),
            };
            let (engine, tail) = match engine {
                "Log" | "TinyLog" | "StripeLog" if args.is_empty() => {
                    ("MergeTree", format!("{} ORDER BY tuple()", tail.trim_end()))
                }
                e if e.ends_with("MergeTree") => (e, tail.to_owned()),
                e => return Err(format!("engine {e} has no replicated form")),
            };
            let path = format!("'/clickhouse/tables/{{shard}}/{db}/{name}_local', '{{replica}}'");
            let args = if args.is_empty() {
                path
            } else {
                format!("{path}, {args}")
            };
            let key = sharding_key(has_site_column(columns));
            let cluster = &self.name;
            return Ok(vec![
                // The Distributed table first, so that whoever finds the local table made
                // by another process (a marker of a history copy) can already read it.
                Step::Sql(format!(
                    "CREATE TABLE IF NOT EXISTS {db}.{name} {on} {columns} \
                     ENGINE = Distributed({cluster}, {db}, {name}_local, {key})"
                )),
                Step::Sql(format!(
                    "CREATE TABLE {if_not_exists}{db}.{name}_local {on} {columns} \
                     ENGINE = Replicated{engine}({args}){tail}"
                )),
            ]);
        }
        if let Some(rest) = sql.strip_prefix("CREATE MATERIALIZED VIEW IF NOT EXISTS ") {
            let (name, rest) = identifier(rest).ok_or("a view name")?;
            let rest = rest
                .trim_start()
                .strip_prefix("TO ")
                .ok_or("a view with `TO` its table")?;
            let (target, rest) = identifier(rest).ok_or("the view's table")?;
            let select = rest.trim_start().strip_prefix("AS").ok_or("`AS SELECT`")?;
            return Ok(vec![Step::Sql(format!(
                "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{name} {on} TO {db}.{target}_local AS{}",
                local_sources(select, db)
            ))]);
        }
        if let Some(rest) = sql.strip_prefix("ALTER TABLE ") {
            let (name, rest) = identifier(rest).ok_or("a table name")?;
            return Ok(vec![
                Step::Sql(format!("ALTER TABLE {db}.{name}_local {on}{rest}")),
                Step::Redistribute(name.to_owned()),
            ]);
        }
        if let Some(rest) = sql.strip_prefix("DROP TABLE IF EXISTS ") {
            let (name, rest) = identifier(rest).ok_or("a table name")?;
            if !rest.trim().is_empty() {
                return Err(format!("DROP TABLE {name} with more after it"));
            }
            return Ok(vec![
                Step::Sql(format!("DROP TABLE IF EXISTS {db}.{name} {on}")),
                Step::Sql(format!("DROP TABLE IF EXISTS {db}.{name}_local {on}")),
            ]);
        }
        Err(format!(
            "no cluster form for `{}`",
            sql.chars().take(60).collect::<String>()
        ))
    }

    /// `X_local` on every node, for statements run `ON CLUSTER` against the local tables
    /// (mutations, dropped partitions).
    pub(crate) fn local(&self, table: &str) -> String {
        format!("{}.{table}_local ON CLUSTER {}", self.database, self.name)
    }

    /// `CREATE DATABASE IF NOT EXISTS db ON CLUSTER name`.
    pub(crate) fn create_database(&self) -> String {
        format!(
            "CREATE DATABASE IF NOT EXISTS {} ON CLUSTER {}",
            self.database, self.name
        )
    }

    /// The statements that make `X` again over `X_local`, whose columns changed.
    pub(crate) fn redistribute(&self, table: &str, has_site: bool) -> [String; 2] {
        let (db, cluster) = (&self.database, &self.name);
        [
            format!("DROP TABLE IF EXISTS {db}.{table} ON CLUSTER {cluster}"),
            format!(
                "CREATE TABLE IF NOT EXISTS {db}.{table} ON CLUSTER {cluster} AS {db}.{table}_local \
                 ENGINE = Distributed({cluster}, {db}, {table}_local, {})",
                sharding_key(has_site)
            ),
        ]
    }
}

impl Db {
    /// Where a statement on the rows of `table` goes (a mutation, a dropped partition): the
    /// table itself on one server, `X_local` on every node of a cluster.
    pub(crate) fn local_tables(&self, table: &str) -> String {
        match &self.cluster {
            Some(cluster) => cluster.local(table),
            None => table.to_owned(),
        }
    }

    /// Runs one migration statement: as it is on one server, in its cluster form on a
    /// cluster.
    pub(crate) async fn run_ddl(&self, statement: &str) -> Result<(), clickhouse::error::Error> {
        let Some(cluster) = &self.cluster else {
            return self.query(statement).execute().await;
        };
        let steps = cluster
            .rewrite(statement)
            .map_err(clickhouse::error::Error::Custom)?;
        // A step another process already made (a column added twice) does not stop the
        // steps after it (the Distributed table made again); its answer is returned last.
        let mut done_before = None;
        for step in steps {
            match step {
                Step::Sql(sql) => match self.ddl_query(&sql).execute().await {
                    Ok(()) => {}
                    Err(e) if already_done(&e) => done_before = Some(e),
                    Err(e) => return Err(e),
                },
                Step::Redistribute(table) => {
                    let site_columns: u64 = self
                        .query(
                            "SELECT count() FROM system.columns \
                             WHERE database = ? AND table = ? AND name = 'site'",
                        )
                        .bind(self.database())
                        .bind(format!("{table}_local"))
                        .fetch_one()
                        .await?;
                    for sql in cluster.redistribute(&table, site_columns > 0) {
                        self.ddl_query(&sql).execute().await?;
                    }
                }
            }
        }
        done_before.map_or(Ok(()), Err)
    }
}

impl Db {
    /// An `ON CLUSTER` statement, waiting up to [`DDL_WAIT`] for every node to run it: each
    /// node runs the cluster's statements one after another, so a node behind (a busy
    /// machine, two processes migrating at once) answers late, not wrongly.
    fn ddl_query(&self, sql: &str) -> crate::sqllog::Query {
        self.query(sql).with_setting(
            "distributed_ddl_task_timeout",
            DDL_WAIT.as_secs().to_string(),
        )
    }
}

/// How long a process waits for every node to run one `ON CLUSTER` statement
/// (ClickHouse's default is 180 s; a test under load once needed more).
pub(crate) const DDL_WAIT: std::time::Duration = std::time::Duration::from_secs(900);

fn sharding_key(has_site: bool) -> &'static str {
    if has_site {
        "sipHash64(site)"
    } else {
        "rand()"
    }
}

/// Whether a column list `( … )` declares a column `site`.
fn has_site_column(columns: &str) -> bool {
    columns
        .trim_start_matches('(')
        .split(',')
        .any(|c| c.split_whitespace().next() == Some("site"))
}

/// `sql` without its whole-line `--` comments, trimmed.
fn without_comment_lines(sql: &str) -> String {
    sql.lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_owned()
}

/// The identifier at the start of `s` (after blanks) and what follows it.
fn identifier(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    (end > 0).then(|| (&s[..end], &s[end..]))
}

/// The index of the `)` closing the `(` that `s` starts with.
fn closing_paren(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// A view's SELECT with each `FROM table` reading `db.table_local`.
fn local_sources(select: &str, db: &str) -> String {
    let mut out = String::with_capacity(select.len() + 32);
    let mut rest = select;
    while let Some(at) = find_word(rest, "FROM") {
        out.push_str(&rest[..at + 4]);
        rest = &rest[at + 4..];
        match identifier(rest) {
            Some((table, after)) if !rest.trim_start().starts_with('(') => {
                let blanks = &rest[..rest.len() - rest.trim_start().len()];
                out.push_str(&format!("{blanks}{db}.{table}_local"));
                rest = after;
            }
            _ => {}
        }
    }
    out.push_str(rest);
    out
}

/// Where `word` stands alone in `s` (not inside a longer identifier).
fn find_word(s: &str, word: &str) -> Option<usize> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut from = 0;
    while let Some(i) = s[from..].find(word).map(|i| i + from) {
        let before = s[..i].chars().next_back().is_none_or(|c| !is_ident(c));
        let after = s[i + word.len()..]
            .chars()
            .next()
            .is_none_or(|c| !is_ident(c));
        if before && after {
            return Some(i);
        }
        from = i + word.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::{MIGRATIONS, statements};

    fn cluster() -> Cluster {
        Cluster {
            name: "c".into(),
            database: "tally".into(),
        }
    }

    fn sql(steps: Vec<Step>) -> Vec<String> {
        steps
            .into_iter()
            .map(|s| match s {
                Step::Sql(s) => s,
                Step::Redistribute(t) => format!("redistribute {t}"),
            })
            .collect()
    }

    #[test]
    fn tables_become_replicated_and_distributed() {
        let got = sql(cluster()
            .rewrite(
                "-- a comment\nCREATE TABLE IF NOT EXISTS goals (\n    site String,\n    id String,\n    \
                 version UInt64\n) ENGINE = ReplacingMergeTree(version)\nORDER BY (site, id)",
            )
            .unwrap());
        assert_eq!(
            got,
            [
                "CREATE TABLE IF NOT EXISTS tally.goals ON CLUSTER c (\n    site String,\n    id String,\n    \
                 version UInt64\n) ENGINE = Distributed(c, tally, goals_local, sipHash64(site))",
                "CREATE TABLE IF NOT EXISTS tally.goals_local ON CLUSTER c (\n    site String,\n    id String,\n    \
                 version UInt64\n) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/tally/goals_local', \
                 '{replica}', version)\nORDER BY (site, id)"
            ]
        );
        let marker = sql(cluster()
            .rewrite("CREATE TABLE m (done UInt8) ENGINE = Log")
            .unwrap());
        assert_eq!(
            marker[1],
            "CREATE TABLE tally.m_local ON CLUSTER c (done UInt8) ENGINE = \
             ReplicatedMergeTree('/clickhouse/tables/{shard}/tally/m_local', '{replica}') ORDER BY tuple()"
        );
        assert!(marker[0].ends_with("Distributed(c, tally, m_local, rand())"));
    }

    #[test]
    fn views_read_and_write_local_tables_and_alters_remake_the_distributed_table() {
        let got = sql(cluster()
            .rewrite(
                "CREATE MATERIALIZED VIEW IF NOT EXISTS v_mv TO v AS\nSELECT site, toDate(ts) AS day\n\
                 FROM events\nARRAY JOIN [1] AS d WHERE kind = 'x'",
            )
            .unwrap());
        assert_eq!(
            got,
            [
                "CREATE MATERIALIZED VIEW IF NOT EXISTS tally.v_mv ON CLUSTER c TO tally.v_local AS\n\
              SELECT site, toDate(ts) AS day\nFROM tally.events_local\nARRAY JOIN [1] AS d WHERE kind = 'x'"
            ]
        );
        assert_eq!(
            sql(cluster()
                .rewrite("ALTER TABLE events ADD COLUMN name String")
                .unwrap()),
            [
                "ALTER TABLE tally.events_local ON CLUSTER c ADD COLUMN name String",
                "redistribute events"
            ]
        );
        assert_eq!(
            sql(cluster().rewrite("DROP TABLE IF EXISTS x_mv").unwrap()),
            [
                "DROP TABLE IF EXISTS tally.x_mv ON CLUSTER c",
                "DROP TABLE IF EXISTS tally.x_mv_local ON CLUSTER c"
            ]
        );
        assert!(cluster().rewrite("RENAME TABLE a TO b").is_err());
        assert!(
            cluster()
                .rewrite("CREATE TABLE j (a UInt8) ENGINE = Join(ANY, LEFT, a)")
                .is_err()
        );
    }

    #[test]
    fn every_migration_statement_has_a_cluster_form() {
        for (version, _, sql) in MIGRATIONS {
            for statement in statements(sql) {
                let steps = cluster().rewrite(statement);
                assert!(steps.is_ok(), "migration {version}: {steps:?}\n{statement}");
            }
        }
    }
}
