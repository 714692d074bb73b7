//! `tally rebuild-counters`: restores the live counters in Redis (page views, site views,
//! visits, bots) after Redis lost them, from ClickHouse's rollups plus the events still
//! waiting in the streams that ClickHouse does not hold yet, and the imported baselines.
//!
//! Run it with the beacons stopped (or accept that views arriving during the rebuild may be
//! missed): it replaces the counters in one transaction.

use std::collections::{BTreeMap, HashSet};

use anyhow::Context;
use tally_clickhouse::{Db, event_id};
use tally_core::{EventKind, Settings, SiteId};
use tally_redis::Store;

/// What was restored for one site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuilt {
    pub site: SiteId,
    pub pages: usize,
    pub views: u64,
    pub visits: u64,
    pub bots: u64,
    /// Events taken from the streams because ClickHouse did not have them yet.
    pub from_streams: u64,
}

/// Rebuilds the counters of `only` (or every configured site).
pub async fn rebuild_counters(
    settings: &Settings,
    only: Option<&SiteId>,
) -> anyhow::Result<Vec<Rebuilt>> {
    let store = Store::connect(&settings.redis)
        .await
        .context("cannot connect to Redis")?;
    let db = Db::new(&settings.clickhouse);
    let mut out = Vec::new();
    for site in settings.sites.iter().map(|s| &s.id) {
        if only.is_some_and(|o| o != site) {
            continue;
        }
        out.push(rebuild_site(&store, &db, settings, site).await?);
    }
    Ok(out)
}

async fn rebuild_site(
    store: &Store,
    db: &Db,
    settings: &Settings,
    site: &SiteId,
) -> anyhow::Result<Rebuilt> {
    let mut pages: BTreeMap<String, u64> = db
        .page_view_totals(site.as_str())
        .await
        .context("cannot read page totals from ClickHouse")?
        .into_iter()
        .collect();
    let (mut views, mut visits, mut bots) = db.site_totals(site.as_str()).await?;

    // Events of this site still in the stream and not yet in ClickHouse.
    let partition = site.partition(settings.redis.partitions);
    let entries: Vec<_> = store
        .all_entries(partition)
        .await?
        .into_iter()
        .filter_map(|e| {
            let key = e.key();
            e.event.ok().map(|ev| (key, ev))
        })
        .filter(|(_, ev)| ev.site == site.as_str())
        .collect();
    let ids: Vec<String> = entries
        .iter()
        .map(|(id, _)| event_id(partition, id))
        .collect();
    let stored: HashSet<String> = if ids.is_empty() {
        HashSet::new()
    } else {
        db.existing_event_ids(&ids, 0, u32::MAX).await?
    };
    let mut from_streams = 0;
    for ((_, ev), eid) in entries.iter().zip(&ids) {
        if stored.contains(eid) {
            continue;
        }
        from_streams += 1;
        match ev.kind {
            EventKind::Pageview => {
                *pages.entry(ev.page.clone()).or_default() += 1;
                views += 1;
                visits += u64::from(ev.new_visit);
            }
            EventKind::Bot => bots += 1,
            EventKind::Ping | EventKind::Leave | EventKind::Repeat => {}
        }
    }
    let page_views: Vec<(String, u64)> = pages.into_iter().collect();
    store
        .replace_counters(site, &page_views, views, visits, bots)
        .await
        .context("cannot write the counters to Redis")?;
    // Imported baselines live in ClickHouse too; put them back beside the counters.
    let baseline = db.baseline(site.as_str()).await?;
    crate::import::apply_to_redis(store, site, &baseline).await?;
    Ok(Rebuilt {
        site: site.clone(),
        pages: page_views.len(),
        views,
        visits,
        bots,
        from_streams,
    })
}
