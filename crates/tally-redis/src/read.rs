//! Live counters for the public API. Each call is one pipelined round trip (per partition).

use redis::Value;
use serde::Serialize;
use tally_core::SiteId;

use std::collections::{BTreeMap, HashMap};

use crate::{Error, Keys, Result, Store};

/// Live counters of a site, and of one page when asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub views: u64,
    pub visits: u64,
    pub bots: u64,
    pub online: u64,
    pub page_views: Option<u64>,
    pub page_online: Option<u64>,
}

/// Visitors of a site seen since `since_ms`, from the `HGETALL` of its `here:` hash (slot →
/// visitors last seen in it): the slots from the one holding `since_ms` on.
fn here_since(reply: &Value, since_ms: i64) -> Result<u64> {
    let slots: HashMap<i64, i64> = redis::from_redis_value_ref(reply)?;
    let from = since_ms.div_euclid(crate::apply::HERE_SLOT_MS);
    let sum: i64 = slots
        .into_iter()
        .filter(|&(slot, _)| slot >= from)
        .map(|(_, n)| n)
        .sum();
    Ok(u64::try_from(sum).unwrap_or(0))
}

/// The counters in `replies`: the site's three replies from `site_at` (totals, baseline
/// totals, online), the page's three from `page_at` (views, baseline views, online).
fn counters_from(
    replies: &[Value],
    site_at: usize,
    page_at: Option<usize>,
    online_since_ms: i64,
) -> Result<Counters> {
    let list = |v: &Value| -> Result<Vec<Option<u64>>> { Ok(redis::from_redis_value_ref(v)?) };
    let number = |v: &Value| -> Result<u64> {
        Ok(redis::from_redis_value_ref::<Option<u64>>(v)?.unwrap_or(0))
    };
    let at = |v: &[Option<u64>], i: usize| v.get(i).copied().flatten().unwrap_or(0);
    let totals = list(&replies[site_at])?;
    let base = list(&replies[site_at + 1])?;
    let mut c = Counters {
        views: at(&totals, 0) + at(&base, 0),
        visits: at(&totals, 1) + at(&base, 1),
        bots: at(&totals, 2),
        online: here_since(&replies[site_at + 2], online_since_ms)?,
        ..Counters::default()
    };
    if let Some(p) = page_at {
        c.page_views = Some(number(&replies[p])? + number(&replies[p + 1])?);
        c.page_online = Some(here_since(&replies[p + 2], online_since_ms)?);
    }
    Ok(c)
}

impl Store {
    /// Site totals and online count, plus `page`'s views and online count.
    pub async fn counters(
        &self,
        site: &SiteId,
        page: Option<&str>,
        online_since_ms: i64,
    ) -> Result<Counters> {
        let wanted = [(site.clone(), page.map(str::to_owned))];
        let mut all = self.counters_many(&wanted, online_since_ms).await?;
        Ok(all.pop().unwrap_or_default())
    }

    /// [`counters`](Self::counters) of several sites and pages at once: one pipeline per
    /// partition (a partition is one cluster slot), sent together; each site's totals and
    /// each distinct page are asked once however often they are wanted. Answers in the
    /// order of `wanted`.
    pub async fn counters_many(
        &self,
        wanted: &[(SiteId, Option<String>)],
        online_since_ms: i64,
    ) -> Result<Vec<Counters>> {
        let mut by_partition: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
        for (i, (site, _)) in wanted.iter().enumerate() {
            by_partition
                .entry(site.partition(self.partitions()))
                .or_default()
                .push(i);
        }
        let reads = by_partition
            .into_iter()
            .map(|(partition, indices)| async move {
                let keys = Keys::new(partition);
                let mut pipe = redis::pipe();
                let mut sent = 0usize;
                // Where each site's and each page's three replies start.
                let mut sites: HashMap<&str, usize> = HashMap::new();
                let mut pages: HashMap<(&str, &str), usize> = HashMap::new();
                let mut layout = Vec::with_capacity(indices.len());
                for &i in &indices {
                    let (site, page) = &wanted[i];
                    let s = site.as_str();
                    let site_at = *sites.entry(s).or_insert_with(|| {
                        pipe.cmd("HMGET")
                            .arg(keys.totals(s))
                            .arg(&["views", "visits", "bots"])
                            .cmd("HMGET")
                            .arg(keys.baseline_totals(s))
                            .arg(&["views", "visits"])
                            .cmd("HGETALL")
                            .arg(keys.here(s));
                        sent += 3;
                        sent - 3
                    });
                    let page_at = page.as_deref().map(|p| {
                        *pages.entry((s, p)).or_insert_with(|| {
                            pipe.cmd("HGET")
                                .arg(keys.views(s))
                                .arg(p)
                                .cmd("HGET")
                                .arg(keys.baseline(s))
                                .arg(p)
                                .cmd("HGETALL")
                                .arg(keys.page_readers(s, p));
                            sent += 3;
                            sent - 3
                        })
                    });
                    layout.push((i, site_at, page_at));
                }
                let mut conn = self.conn();
                let replies: Vec<Value> = pipe.query_async(&mut conn).await?;
                if replies.len() != sent {
                    return Err(Error::Reply(format!(
                        "{} replies to {sent} counter reads",
                        replies.len()
                    )));
                }
                layout
                    .into_iter()
                    .map(|(i, site_at, page_at)| {
                        Ok((
                            i,
                            counters_from(&replies, site_at, page_at, online_since_ms)?,
                        ))
                    })
                    .collect::<Result<Vec<_>>>()
            });
        let mut out = vec![Counters::default(); wanted.len()];
        for (i, c) in futures_util::future::try_join_all(reads)
            .await?
            .into_iter()
            .flatten()
        {
            out[i] = c;
        }
        Ok(out)
    }

    /// Live view counts (imported baselines included) of several pages of a site, 0 for
    /// unknown pages. One round trip.
    pub async fn page_views(&self, site: &SiteId, pages: &[String]) -> Result<Vec<u64>> {
        if pages.is_empty() {
            return Ok(Vec::new());
        }
        let keys = Keys::new(site.partition(self.partitions()));
        self.live_and_imported(
            &keys.views(site.as_str()),
            &keys.baseline(site.as_str()),
            pages,
        )
        .await
    }

    /// The sums of `fields` in the live hash and the imported one (0 where neither has it).
    /// One round trip.
    async fn live_and_imported(
        &self,
        live: &str,
        imported: &str,
        fields: &[String],
    ) -> Result<Vec<u64>> {
        let mut conn = self.conn();
        let (live, base): (Vec<Option<u64>>, Vec<Option<u64>>) = redis::pipe()
            .cmd("HMGET")
            .arg(live)
            .arg(fields)
            .cmd("HMGET")
            .arg(imported)
            .arg(fields)
            .query_async(&mut conn)
            .await?;
        Ok(live
            .into_iter()
            .zip(base)
            .map(|(l, b)| l.unwrap_or(0) + b.unwrap_or(0))
            .collect())
    }

    /// Live counts (imported baselines included) of the custom event `name` for each of
    /// `targets`, 0 for unknown ones. One round trip.
    pub async fn event_counts(
        &self,
        site: &SiteId,
        name: &str,
        targets: &[String],
    ) -> Result<Vec<u64>> {
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let keys = Keys::new(site.partition(self.partitions()));
        let fields: Vec<String> = targets
            .iter()
            .map(|t| crate::wire::event_field(name, t))
            .collect();
        self.live_and_imported(
            &keys.event_counts(site.as_str()),
            &keys.event_baseline(site.as_str()),
            &fields,
        )
        .await
    }

    /// Replaces the imported baseline of `site` in one transaction.
    pub async fn replace_baseline(
        &self,
        site: &SiteId,
        pages: &[(String, u64)],
        total_views: u64,
        total_visits: u64,
    ) -> Result<()> {
        let keys = Keys::new(site.partition(self.partitions()));
        let s = site.as_str();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("DEL")
            .arg(keys.baseline(s))
            .ignore()
            .cmd("HSET")
            .arg(keys.baseline_totals(s))
            .arg("views")
            .arg(total_views)
            .arg("visits")
            .arg(total_visits)
            .ignore();
        hset_counts(&mut pipe, &keys.baseline(s), pages);
        let mut conn = self.conn();
        let _: () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    /// Replaces the imported custom event totals of `site` ((name, target) → events) in one
    /// transaction.
    pub async fn replace_event_baseline(
        &self,
        site: &SiteId,
        counts: &[((String, String), u64)],
    ) -> Result<()> {
        let keys = Keys::new(site.partition(self.partitions()));
        self.replace_event_hash(&keys.event_baseline(site.as_str()), counts)
            .await
    }

    /// Every page of `site` with its live views, imported views and latest title.
    pub async fn all_pages(&self, site: &SiteId) -> Result<Vec<(String, u64, u64, String)>> {
        let keys = Keys::new(site.partition(self.partitions()));
        let s = site.as_str();
        let mut conn = self.conn();
        let (live, base, titles): (
            std::collections::HashMap<String, u64>,
            std::collections::HashMap<String, u64>,
            std::collections::HashMap<String, String>,
        ) = redis::pipe()
            .cmd("HGETALL")
            .arg(keys.views(s))
            .cmd("HGETALL")
            .arg(keys.baseline(s))
            .cmd("HGETALL")
            .arg(keys.titles(s))
            .query_async(&mut conn)
            .await?;
        let mut pages: std::collections::BTreeSet<&String> = live.keys().collect();
        pages.extend(base.keys());
        Ok(pages
            .into_iter()
            .map(|p| {
                (
                    p.clone(),
                    live.get(p).copied().unwrap_or(0),
                    base.get(p).copied().unwrap_or(0),
                    titles.get(p).cloned().unwrap_or_default(),
                )
            })
            .collect())
    }
}

impl Store {
    /// Replaces the live view counters and totals of `site` in one transaction (used by
    /// `tally rebuild-counters` after a Redis loss).
    pub async fn replace_counters(
        &self,
        site: &SiteId,
        page_views: &[(String, u64)],
        views: u64,
        visits: u64,
        bots: u64,
    ) -> Result<()> {
        let keys = Keys::new(site.partition(self.partitions()));
        let s = site.as_str();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("DEL")
            .arg(keys.views(s))
            .ignore()
            .cmd("DEL")
            .arg(keys.totals(s))
            .ignore();
        hset_counts(&mut pipe, &keys.views(s), page_views);
        pipe.cmd("HSET")
            .arg(keys.totals(s))
            .arg("views")
            .arg(views)
            .arg("visits")
            .arg(visits)
            .arg("bots")
            .arg(bots)
            .ignore();
        let mut conn = self.conn();
        let _: () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    /// Replaces the live custom event counts of `site` with `counts` ((name, target) →
    /// events), in one transaction.
    pub async fn replace_event_counts(
        &self,
        site: &SiteId,
        counts: &[((String, String), u64)],
    ) -> Result<()> {
        let keys = Keys::new(site.partition(self.partitions()));
        self.replace_event_hash(&keys.event_counts(site.as_str()), counts)
            .await
    }

    /// Replaces the hash `key` of custom event counts with `counts`, in one transaction.
    async fn replace_event_hash(
        &self,
        key: &str,
        counts: &[((String, String), u64)],
    ) -> Result<()> {
        let fields: Vec<(String, u64)> = counts
            .iter()
            .map(|((name, target), n)| (crate::wire::event_field(name, target), *n))
            .collect();
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("DEL").arg(key).ignore();
        hset_counts(&mut pipe, key, &fields);
        let mut conn = self.conn();
        let _: () = pipe.query_async(&mut conn).await?;
        Ok(())
    }
}

/// Most pages a realtime read looks at: the ones with the latest events. A page with many
/// readers has events every few seconds (each reader's heartbeat), so it is among them; a
/// site with 50,000 pages read in the online window costs no more than one with 200.
pub const REALTIME_CANDIDATES: usize = 200;

/// What a realtime read looks at.
#[derive(Debug, Clone, Copy)]
pub struct RealtimeView {
    pub now_ms: i64,
    /// The online window: readers whose last event is younger count.
    pub window_ms: i64,
    /// Minutes of views per minute, ending with the current one.
    pub minutes: i64,
    /// Most pages answered.
    pub max_pages: usize,
    /// Most pages read: those with the latest events.
    pub candidates: usize,
}

/// What is happening on a site right now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Realtime {
    pub online: u64,
    /// Pages with someone on them, most readers first: (page, title, readers). The page ''
    /// stands for the pages past `tracking.max_pages` ("other pages").
    pub pages: Vec<(String, String, u64)>,
    /// Pages held live for the site (its view-count hash, "other pages" included).
    pub live_pages: u64,
    /// Page views per minute, oldest first: (Unix minute, views).
    pub views_per_minute: Vec<(i64, u64)>,
}

impl Store {
    /// Online visitors, the pages being read (at most `max_pages` of the
    /// [`REALTIME_CANDIDATES`] pages with the latest events) and page views in each of the
    /// last `minutes` minutes. Two round trips.
    pub async fn realtime(
        &self,
        site: &SiteId,
        now_ms: i64,
        window_ms: i64,
        minutes: i64,
        max_pages: usize,
    ) -> Result<Realtime> {
        let view = RealtimeView {
            now_ms,
            window_ms,
            minutes,
            max_pages,
            candidates: REALTIME_CANDIDATES,
        };
        self.realtime_view(site, &view).await
    }

    /// [`realtime`](Self::realtime) with every bound given (the benchmark compares reading
    /// [`REALTIME_CANDIDATES`] pages with reading them all).
    pub async fn realtime_view(&self, site: &SiteId, view: &RealtimeView) -> Result<Realtime> {
        let RealtimeView {
            now_ms,
            window_ms,
            minutes,
            max_pages,
            candidates,
        } = *view;
        let keys = Keys::new(site.partition(self.partitions()));
        let s = site.as_str();
        let since = now_ms - window_ms;
        let now_minute = now_ms.div_euclid(60_000);
        let minute_keys: Vec<String> = (now_minute - minutes + 1..=now_minute)
            .map(|m| keys.views_in_minute(s, m))
            .collect();
        let mut conn = self.conn();
        let (here, pages, counts, live_pages): (Value, Vec<String>, Vec<Option<u64>>, u64) =
            redis::pipe()
                .cmd("HGETALL")
                .arg(keys.here(s))
                .cmd("ZREVRANGEBYSCORE")
                .arg(keys.active_pages(s))
                .arg("+inf")
                .arg(since)
                .arg("LIMIT")
                .arg(0)
                .arg(candidates)
                .cmd("MGET")
                .arg(&minute_keys)
                .cmd("HLEN")
                .arg(keys.views(s))
                .query_async(&mut conn)
                .await?;
        let mut rt = Realtime {
            online: here_since(&here, since)?,
            pages: Vec::new(),
            live_pages,
            views_per_minute: (now_minute - minutes + 1..=now_minute)
                .zip(counts)
                .map(|(m, c)| (m, c.unwrap_or(0)))
                .collect(),
        };
        if !pages.is_empty() {
            let mut pipe = redis::pipe();
            for page in &pages {
                pipe.cmd("HGETALL").arg(keys.page_readers(s, page));
            }
            pipe.cmd("HMGET").arg(keys.titles(s)).arg(&pages);
            let mut replies: Vec<Value> = pipe.query_async(&mut conn).await?;
            let titles: Vec<Option<String>> =
                redis::from_redis_value(replies.pop().unwrap_or(Value::Nil))?;
            for ((page, reply), title) in pages.into_iter().zip(replies).zip(titles) {
                let readers = here_since(&reply, since)?;
                if readers > 0 {
                    rt.pages.push((page, title.unwrap_or_default(), readers));
                }
            }
            rt.pages
                .sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
            rt.pages.truncate(max_pages);
        }
        Ok(rt)
    }
}

/// Adds `HSET key page count …` commands for `counts` to `pipe`, 1,000 fields at a time
/// (large imports stay within sane command sizes).
fn hset_counts(pipe: &mut redis::Pipeline, key: &str, counts: &[(String, u64)]) {
    for chunk in counts.chunks(1000) {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(key);
        for (page, n) in chunk {
            cmd.arg(page).arg(n);
        }
        pipe.add_command(cmd).ignore();
    }
}
