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
    // Accepted batches not yet applied are applied first (what a worker would do next), so
    // the events stream holds every event not in ClickHouse, with its visit.
    store
        .apply_all(&settings.tracking, chrono::Utc::now().timestamp_millis())
        .await
        .context("cannot apply the accepted events")?;
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
    let mut events: BTreeMap<(String, String), u64> = db
        .event_totals(site.as_str())
        .await
        .context("cannot read custom event totals from ClickHouse")?
        .into_iter()
        .map(|(name, target, n)| ((name, target), n))
        .collect();

    // Events of this site still in the stream and not yet in ClickHouse.
    let partition = site.partition(settings.redis.partitions);
    let entries: Vec<_> = store
        .all_entries(partition)
        .await?
        .into_iter()
        .filter_map(|e| e.event.ok().map(|ev| (e.key.to_string(), ev)))
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
            EventKind::Custom => {
                *events
                    .entry((ev.name.clone(), ev.target.clone()))
                    .or_default() += 1;
            }
            EventKind::Ping | EventKind::Leave | EventKind::Repeat | EventKind::Unverified => {}
        }
    }
    let page_views = within_page_cap(pages, settings.tracking.max_pages);
    store
        .replace_counters(site, &page_views, views, visits, bots)
        .await
        .context("cannot write the counters to Redis")?;
    let events = most_counted(events, settings.tracking.max_pages);
    store
        .replace_event_counts(site, &events)
        .await
        .context("cannot write the custom event counts to Redis")?;
    // Imported baselines live in ClickHouse too; put them back beside the counters.
    let baseline = db.baseline(site.as_str()).await?;
    crate::import::apply_to_redis(store, site, &baseline).await?;
    let imported = db.event_baseline(site.as_str()).await?;
    store
        .replace_event_baseline(site, &imported)
        .await
        .context("cannot write the imported download totals to Redis")?;
    Ok(Rebuilt {
        site: site.clone(),
        pages: page_views.len(),
        views,
        visits,
        bots,
        from_streams,
    })
}

/// The live page counts to keep for `pages` under `tracking.max_pages` (`cap`, 0 = none): the
/// `cap` most viewed pages, and the views of the rest summed under "" ("other pages"), as
/// the accept script would have kept them. After someone filled a site's live pages with
/// made-up addresses, a rebuild therefore gives the room back to the pages people read.
fn within_page_cap(pages: BTreeMap<String, u64>, cap: u32) -> Vec<(String, u64)> {
    let cap = cap as usize;
    if cap == 0 || pages.len() <= cap {
        return pages.into_iter().collect();
    }
    let mut by_views: Vec<(String, u64)> = pages.into_iter().collect();
    // Most viewed first; the page key breaks ties, so a rebuild is repeatable.
    by_views.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let rest: u64 = by_views[cap..].iter().map(|(_, n)| n).sum();
    by_views.truncate(cap);
    by_views.push((String::new(), rest));
    by_views
}

/// The live custom event counts to keep under `tracking.max_pages` (`cap`, 0 = none): the
/// `cap` most counted names and targets. The accept script counts no others live, so none
/// are summed into another row.
fn most_counted(counts: BTreeMap<(String, String), u64>, cap: u32) -> Vec<((String, String), u64)> {
    let mut by_count: Vec<_> = counts.into_iter().collect();
    if cap > 0 && by_count.len() > cap as usize {
        by_count.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        by_count.truncate(cap as usize);
    }
    by_count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rebuild_keeps_the_most_viewed_pages_and_sums_the_rest() {
        let pages: BTreeMap<String, u64> = [("/a", 5), ("/b", 1), ("/c", 9), ("/d", 1)]
            .into_iter()
            .map(|(p, n)| (p.to_owned(), n))
            .collect();
        assert_eq!(within_page_cap(pages.clone(), 0).len(), 4, "no cap");
        assert_eq!(within_page_cap(pages.clone(), 4).len(), 4);
        assert_eq!(
            within_page_cap(pages, 2),
            [
                ("/c".to_owned(), 9),
                ("/a".to_owned(), 5),
                (String::new(), 2)
            ]
        );
    }
}
