//! Live counters for the public API. Each call is one pipelined round trip.

use redis::Value;
use serde::Serialize;
use tally_core::SiteId;

use crate::{Keys, Result, Store};

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

impl Store {
    /// Site totals and online count, plus `page`'s views and online count.
    pub async fn counters(
        &self,
        site: &SiteId,
        page: Option<&str>,
        online_since_ms: i64,
    ) -> Result<Counters> {
        let keys = Keys::new(site.partition(self.partitions()));
        let s = site.as_str();
        let mut pipe = redis::pipe();
        pipe.cmd("HMGET")
            .arg(keys.totals(s))
            .arg(&["views", "visits", "bots"])
            .cmd("ZCOUNT")
            .arg(keys.online(s))
            .arg(online_since_ms)
            .arg("+inf");
        if let Some(page) = page {
            pipe.cmd("HGET")
                .arg(keys.views(s))
                .arg(page)
                .cmd("ZCOUNT")
                .arg(keys.page_online(s, page))
                .arg(online_since_ms)
                .arg("+inf");
        }
        let mut conn = self.conn();
        let replies: Vec<Value> = pipe.query_async(&mut conn).await?;
        let totals: Vec<Option<u64>> = redis::from_redis_value(replies[0].clone())?;
        let number = |v: &Value| -> Result<u64> {
            Ok(redis::from_redis_value::<Option<u64>>(v.clone())?.unwrap_or(0))
        };
        let mut c = Counters {
            views: totals.first().copied().flatten().unwrap_or(0),
            visits: totals.get(1).copied().flatten().unwrap_or(0),
            bots: totals.get(2).copied().flatten().unwrap_or(0),
            online: number(&replies[1])?,
            ..Counters::default()
        };
        if page.is_some() {
            c.page_views = Some(number(&replies[2])?);
            c.page_online = Some(number(&replies[3])?);
        }
        Ok(c)
    }

    /// Live view counts of several pages of a site (0 for unknown pages).
    pub async fn page_views(&self, site: &SiteId, pages: &[String]) -> Result<Vec<u64>> {
        if pages.is_empty() {
            return Ok(Vec::new());
        }
        let keys = Keys::new(site.partition(self.partitions()));
        let mut conn = self.conn();
        let counts: Vec<Option<u64>> = redis::cmd("HMGET")
            .arg(keys.views(site.as_str()))
            .arg(pages)
            .query_async(&mut conn)
            .await?;
        Ok(counts.into_iter().map(Option::unwrap_or_default).collect())
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
        for chunk in page_views.chunks(1000) {
            let mut cmd = redis::cmd("HSET");
            cmd.arg(keys.views(s));
            for (page, n) in chunk {
                cmd.arg(page).arg(n);
            }
            pipe.add_command(cmd).ignore();
        }
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
}
