//! Imported counters (`tally import-counters`): the counts a site showed before Tally, kept
//! apart from the events and added to the live counters. An import replaces the site's
//! previous one as a whole.

use serde::{Deserialize, Serialize};

use crate::{Db, Result, sqllog};

/// One imported page (page `""` carries the site totals).
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct BaselineRow {
    pub site: String,
    pub import_id: u64,
    pub page: String,
    pub title: String,
    pub views: u64,
    pub visits: u64,
    pub imported_at: u32,
}

/// A site's current baseline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Baseline {
    /// (page, title, views)
    pub pages: Vec<(String, String, u64)>,
    pub total_views: u64,
    pub total_visits: u64,
}

#[derive(Deserialize, clickhouse::Row)]
struct Stored {
    page: String,
    title: String,
    views: u64,
    visits: u64,
}

impl Db {
    /// Stores `baseline` as `site`'s import `import_id` (one INSERT: all rows or none).
    pub async fn store_baseline(
        &self,
        site: &str,
        import_id: u64,
        baseline: &Baseline,
    ) -> Result<()> {
        let now = u32::try_from(chrono::Utc::now().timestamp()).unwrap_or(u32::MAX);
        let mut rows = Vec::with_capacity(baseline.pages.len() + 1);
        rows.push(BaselineRow {
            site: site.into(),
            import_id,
            page: String::new(),
            title: String::new(),
            views: baseline.total_views,
            visits: baseline.total_visits,
            imported_at: now,
        });
        for (page, title, views) in &baseline.pages {
            rows.push(BaselineRow {
                site: site.into(),
                import_id,
                page: page.clone(),
                title: title.clone(),
                views: *views,
                visits: 0,
                imported_at: now,
            });
        }
        sqllog::record(&format!(
            "INSERT INTO counter_baselines ({}) FORMAT RowBinary",
            <BaselineRow as clickhouse::Row>::COLUMN_NAMES.join(", ")
        ));
        let mut insert = self
            .client
            .insert::<BaselineRow>("counter_baselines")
            .await?;
        for row in &rows {
            insert.write(row).await?;
        }
        insert.end().await?;
        Ok(())
    }

    /// The newest import of `site` (empty when there is none).
    pub async fn baseline(&self, site: &str) -> Result<Baseline> {
        let rows: Vec<Stored> = self
            .query(
                "SELECT page, title, views, visits FROM counter_baselines \
                 WHERE site = ? AND import_id = (SELECT max(import_id) FROM counter_baselines WHERE site = ?) \
                 ORDER BY page",
            )
            .bind(site)
            .bind(site)
            .fetch_all()
            .await?;
        let mut b = Baseline::default();
        for r in rows {
            if r.page.is_empty() {
                b.total_views = r.views;
                b.total_visits = r.visits;
            } else {
                b.pages.push((r.page, r.title, r.views));
            }
        }
        Ok(b)
    }
}

#[derive(clickhouse::Row, Serialize)]
struct EventBaselineRow {
    site: String,
    import_id: u64,
    name: String,
    target: String,
    events: u64,
    imported_at: u32,
}

#[derive(Deserialize, clickhouse::Row)]
struct StoredEvents {
    name: String,
    target: String,
    events: u64,
}

impl Db {
    /// Stores `counts` ((name, target) → events) as `site`'s event import `import_id`, which
    /// replaces the previous one (one INSERT: all rows or none).
    pub async fn store_event_baseline(
        &self,
        site: &str,
        import_id: u64,
        counts: &[((String, String), u64)],
    ) -> Result<()> {
        let now = u32::try_from(chrono::Utc::now().timestamp()).unwrap_or(u32::MAX);
        sqllog::record(&format!(
            "INSERT INTO event_baselines ({}) FORMAT RowBinary",
            <EventBaselineRow as clickhouse::Row>::COLUMN_NAMES.join(", ")
        ));
        let mut insert = self
            .client
            .insert::<EventBaselineRow>("event_baselines")
            .await?;
        // An empty import still replaces the previous one: its row of no event marks it.
        insert
            .write(&EventBaselineRow {
                site: site.into(),
                import_id,
                name: String::new(),
                target: String::new(),
                events: 0,
                imported_at: now,
            })
            .await?;
        for ((name, target), events) in counts {
            insert
                .write(&EventBaselineRow {
                    site: site.into(),
                    import_id,
                    name: name.clone(),
                    target: target.clone(),
                    events: *events,
                    imported_at: now,
                })
                .await?;
        }
        insert.end().await?;
        Ok(())
    }

    /// The newest event import of `site`: (name, target) → events.
    pub async fn event_baseline(&self, site: &str) -> Result<Vec<((String, String), u64)>> {
        let rows: Vec<StoredEvents> = self
            .query(
                "SELECT name, target, events FROM event_baselines \
                 WHERE site = ? AND name != '' \
                 AND import_id = (SELECT max(import_id) FROM event_baselines WHERE site = ?) \
                 ORDER BY name, target",
            )
            .bind(site)
            .bind(site)
            .fetch_all()
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| ((r.name, r.target), r.events))
            .collect())
    }
}
