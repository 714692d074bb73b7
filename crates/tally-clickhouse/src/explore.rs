//! Filtered views and the reports the rollups cannot answer (issue 18): every breakdown,
//! entry and exit pages, engaged time and per-page bounce rates, and any view with filters.
//! They read `events` itself, ordered by `(site, ts, …)`, so a range of one site is one
//! contiguous read (measured in `docs/benchmarks.md`). Every value is bound: the SQL text is
//! built only from this module's constants, and each filter adds `?` placeholders whose
//! values follow in order ([`Sql`]).
//!
//! Meanings with filters: views and unique visitors count the page views that match every
//! filter; a visit counts when it has a matching page view in the range, and its bounce and
//! length are those of the whole visit (its views, pings and leaves in the range).

use serde::Serialize;

use crate::{
    Db, Result,
    sqllog::Query,
    stats::{Bucket, Dimension, EARLIER_NAMES, Interval, NameRow, PageRow, Range, Summary},
};

/// What a statistics view can be filtered by: each a query parameter of the stats API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Page,
    /// Visits that started on this page.
    EntryPage,
    Referrer,
    UtmSource,
    UtmMedium,
    UtmCampaign,
    Country,
    Region,
    City,
    Browser,
    Os,
    Device,
    Screen,
    Language,
}

impl Field {
    /// Every field, in the order filters are applied and shown.
    pub const ALL: [Field; 14] = [
        Field::Page,
        Field::EntryPage,
        Field::Referrer,
        Field::UtmSource,
        Field::UtmMedium,
        Field::UtmCampaign,
        Field::Country,
        Field::Region,
        Field::City,
        Field::Browser,
        Field::Os,
        Field::Device,
        Field::Screen,
        Field::Language,
    ];

    /// The query parameter.
    pub fn param(self) -> &'static str {
        match self {
            Self::Page => "page",
            Self::EntryPage => "entry_page",
            Self::Referrer => "referrer",
            Self::UtmSource => "utm_source",
            Self::UtmMedium => "utm_medium",
            Self::UtmCampaign => "utm_campaign",
            Self::Country => "country",
            Self::Region => "region",
            Self::City => "city",
            Self::Browser => "browser",
            Self::Os => "os",
            Self::Device => "device",
            Self::Screen => "screen",
            Self::Language => "language",
        }
    }

    /// The field whose values a breakdown lists, if filtering by them is possible.
    pub fn of(dim: Dimension) -> Field {
        match dim {
            Dimension::Referrer => Self::Referrer,
            Dimension::Browser => Self::Browser,
            Dimension::Os => Self::Os,
            Dimension::Device => Self::Device,
            Dimension::Country => Self::Country,
            Dimension::Region => Self::Region,
            Dimension::City => Self::City,
            Dimension::UtmSource => Self::UtmSource,
            Dimension::UtmMedium => Self::UtmMedium,
            Dimension::UtmCampaign => Self::UtmCampaign,
            Dimension::Screen => Self::Screen,
            Dimension::Language => Self::Language,
        }
    }
}

/// Screen size classes of the viewport width the tracker sends (`w`): phone < 576 px,
/// tablet < 992, laptop < 1440, desktop from 1440; empty when no width was sent.
pub const SCREEN: &str = "multiIf(width = 0, '', width < 576, 'phone', width < 992, 'tablet', \
                          width < 1440, 'laptop', 'desktop')";

/// The expression of `events` a breakdown groups by (browser and OS names are mapped in
/// [`Db::breakdown`]).
fn column(dim: Dimension) -> &'static str {
    match dim {
        Dimension::Referrer => "referrer_host",
        Dimension::Browser => "browser",
        Dimension::Os => "os",
        Dimension::Device => "device",
        Dimension::Country => "country",
        Dimension::Region => "region",
        Dimension::City => "city",
        Dimension::UtmSource => "utm_source",
        Dimension::UtmMedium => "utm_medium",
        Dimension::UtmCampaign => "utm_campaign",
        Dimension::Screen => SCREEN,
        Dimension::Language => "language",
    }
}

/// Filters combined with AND, at most one value per field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters(Vec<(Field, String)>);

impl Filters {
    /// Adds (or replaces) the filter on `field`.
    pub fn set(&mut self, field: Field, value: impl Into<String>) {
        let value = value.into();
        match self.0.iter_mut().find(|(f, _)| *f == field) {
            Some(slot) => slot.1 = value,
            None => self.0.push((field, value)),
        }
        self.0
            .sort_by_key(|(f, _)| Field::ALL.iter().position(|a| a == f));
    }

    /// Removes the filter on `field`.
    pub fn remove(&mut self, field: Field) {
        self.0.retain(|(f, _)| *f != field);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The filters, in [`Field::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Field, &str)> {
        self.0.iter().map(|(f, v)| (*f, v.as_str()))
    }

    /// The value of `field`, if filtered.
    pub fn get(&self, field: Field) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, v)| v.as_str())
    }

    /// ` AND …` for each filter, on the events of `r`.
    fn condition(&self, r: &Range, sql: &mut Sql) {
        for (field, value) in self.iter() {
            match field {
                Field::EntryPage => {
                    sql.push(" AND session IN (SELECT session FROM events WHERE ");
                    sql.range(r, "'pageview'");
                    sql.push(" AND visit_seq = 1 AND page = ?)").text(value);
                }
                // Names stored before the classification moved to uap-core count under
                // today's name, as the breakdowns show them.
                Field::Browser | Field::Os => {
                    let col = if field == Field::Browser {
                        "browser"
                    } else {
                        "os"
                    };
                    let mut names = vec![value.to_owned()];
                    names.extend(
                        EARLIER_NAMES
                            .iter()
                            .filter(|(_, now)| *now == value)
                            .map(|(old, _)| (*old).to_owned()),
                    );
                    sql.push(" AND has(?, ").texts(names).push(col).push(")");
                }
                _ => {
                    let col = match field {
                        Field::Page => "page",
                        Field::Referrer => "referrer_host",
                        Field::UtmSource => "utm_source",
                        Field::UtmMedium => "utm_medium",
                        Field::UtmCampaign => "utm_campaign",
                        Field::Country => "country",
                        Field::Region => "region",
                        Field::City => "city",
                        Field::Device => "device",
                        Field::Screen => SCREEN,
                        _ => "language",
                    };
                    sql.push(" AND ").push(col).push(" = ?").text(value);
                }
            }
        }
    }
}

/// A bound value.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
enum Value {
    Text(String),
    Texts(Vec<String>),
    Number(u32),
}

/// SQL text and its values, in placeholder order.
#[derive(Debug, Default)]
struct Sql {
    text: String,
    values: Vec<Value>,
}

impl Sql {
    fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            values: Vec::new(),
        }
    }

    fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    fn text(&mut self, v: &str) -> &mut Self {
        self.values.push(Value::Text(v.to_owned()));
        self
    }

    fn texts(&mut self, v: Vec<String>) -> &mut Self {
        self.values.push(Value::Texts(v));
        self
    }

    fn number(&mut self, v: u32) -> &mut Self {
        self.values.push(Value::Number(v));
        self
    }

    /// The events of `r` of the given kinds (a list of quoted kind names).
    fn range(&mut self, r: &Range, kinds: &str) -> &mut Self {
        self.span(r).push(" AND kind IN (").push(kinds).push(")")
    }

    /// `page IN (?, …)` with one bound value per page: a table ordered by page reads those
    /// pages' rows alone (`has(?, page)` would not use the order; 18.16 refuses `IN [..]`).
    fn page_in<'a>(&mut self, pages: impl Iterator<Item = &'a str>) -> &mut Self {
        self.push("page IN (");
        for (i, page) in pages.enumerate() {
            self.push(if i == 0 { "?" } else { ", ?" }).text(page);
        }
        self.push(")")
    }

    /// The rows of `r`'s site and time.
    fn span(&mut self, r: &Range) -> &mut Self {
        self.push("site = ? AND ts >= toDateTime(?, 'UTC') AND ts < toDateTime(?, 'UTC')")
            .text(&r.site)
            .number(r.start)
            .number(r.end)
    }

    /// The page views of `r` that match `f`.
    fn views(&mut self, r: &Range, f: &Filters) -> &mut Self {
        self.range(r, "'pageview'");
        f.condition(r, self);
        self
    }

    /// ` AND session IN (…)`: visits with a page view of `r` matching `f` (nothing when `f`
    /// is empty).
    fn matching_visits(&mut self, r: &Range, f: &Filters) -> &mut Self {
        if !f.is_empty() {
            self.push(" AND session IN (SELECT session FROM events WHERE ");
            self.views(r, f);
            self.push(")");
        }
        self
    }
}

/// A page's path and title, from the page rollup.
#[derive(serde::Deserialize, clickhouse::Row)]
struct PageName {
    page: String,
    path: String,
    title: String,
}

#[derive(serde::Deserialize, clickhouse::Row)]
struct Counts {
    views: u64,
    visitors: u64,
    repeats: u64,
}

#[derive(serde::Deserialize, clickhouse::Row)]
struct VisitCounts {
    visits: u64,
    bounces: u64,
    gap_ms: u64,
}

/// A page's engagement: average engaged time per view, and the bounces of the visits that
/// entered on it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, clickhouse::Row)]
pub struct Engagement {
    pub page: String,
    /// Time visible on the page, summed over its views (see [`Db::engagement`]).
    pub engaged_ms: u64,
    /// Page views the time is shared among.
    pub views: u64,
    /// Visits that started on the page.
    pub entries: u64,
    /// Those of them with no second page view.
    pub bounces: u64,
}

/// An entry page: visits that started on it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, clickhouse::Row)]
pub struct EntryRow {
    pub page: String,
    pub title: String,
    /// Visits that started on the page.
    pub entries: u64,
    /// Unique visitors among them.
    pub visitors: u64,
    /// Those visits with no second page view.
    pub bounces: u64,
}

/// An exit page: visits whose last page view in the range was on it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, clickhouse::Row)]
pub struct ExitRow {
    pub page: String,
    pub exits: u64,
}

/// Views (and the last title) of some pages.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, clickhouse::Row)]
pub struct PageViews {
    pub page: String,
    pub title: String,
    pub views: u64,
}

impl Db {
    fn run(&self, sql: Sql) -> Query {
        let mut q = self.stats_query(&sql.text);
        for v in sql.values {
            q = q.bind(v);
        }
        q
    }

    /// The headline figures of the page views matching `f` (see the module's meanings).
    /// Crawler hits and unverified pixels carry no page or visitor details, so their counts
    /// are the site's over the range whatever the filters.
    pub async fn summary_filtered(&self, r: &Range, f: &Filters) -> Result<Summary> {
        let mut counts = Sql::new(
            "SELECT countIf(kind = 'pageview') AS views, \
             uniqCombinedIf(visitor, kind = 'pageview') AS visitors, \
             countIf(kind = 'repeat') AS repeats FROM events WHERE ",
        );
        counts.range(r, "'pageview', 'repeat'");
        f.condition(r, &mut counts);
        let mut visits = Sql::new(
            "SELECT count() AS visits, countIf(views = 1) AS bounces, sum(gaps) AS gap_ms FROM ( \
             SELECT session, countIf(kind = 'pageview') AS views, sum(toUInt64(gap_ms)) AS gaps \
             FROM events WHERE ",
        );
        visits.range(r, "'pageview', 'ping', 'leave'");
        visits.push(" AND session IN (SELECT session FROM events WHERE ");
        visits.views(r, f);
        visits.push(") GROUP BY session)");
        let (counts, visits, (bots, unverified)) = tokio::try_join!(
            async { Ok::<_, crate::Error>(self.run(counts).fetch_one::<Counts>().await?) },
            async { Ok(self.run(visits).fetch_one::<VisitCounts>().await?) },
            self.uncounted_hits(r),
        )?;
        let per_visit = |x: f64| {
            if visits.visits == 0 {
                0.0
            } else {
                x / visits.visits as f64
            }
        };
        let visit_count = visits.visits.min(counts.views);
        Ok(Summary {
            views: counts.views,
            visits: visit_count,
            visitors: counts.visitors.min(visit_count),
            bounce_rate: per_visit(visits.bounces as f64),
            avg_visit_seconds: per_visit(visits.gap_ms as f64 / 1000.0),
            bots_filtered: bots,
            repeats_not_counted: counts.repeats,
            unverified_not_counted: unverified,
        })
    }

    /// Views, visits (with a matching view in the bucket) and unique visitors per hour or
    /// local day, of the page views matching `f`; empty buckets absent.
    pub async fn timeseries_filtered(
        &self,
        r: &Range,
        f: &Filters,
        interval: Interval,
    ) -> Result<Vec<Bucket>> {
        let bucket = match interval {
            Interval::Hour => "toString(toUnixTimestamp(hour))",
            Interval::Day => "toString(day)",
        };
        let mut sql = Sql::new(&format!(
            "SELECT {bucket} AS bucket, count() AS views, uniqExact(session) AS visits, \
             uniqCombined(visitor) AS visitors FROM events WHERE "
        ));
        sql.views(r, f);
        sql.push(" GROUP BY bucket ORDER BY bucket");
        let buckets: Vec<Bucket> = self.run(sql).fetch_all().await?;
        Ok(crate::stats::finish_series(buckets, interval, r.tz))
    }

    /// Pages by matching views (then page key), `limit` rows from `offset`.
    pub async fn pages_filtered(
        &self,
        r: &Range,
        f: &Filters,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<PageRow>> {
        // Ranked without their paths and titles (reading every matching view's title cost a
        // third of the query), which come from the page rollup for the pages shown.
        let mut sql = Sql::new(
            "SELECT page, '' AS path, '' AS title, count() AS views, \
             uniqCombined(visitor) AS visitors FROM events WHERE ",
        );
        sql.views(r, f);
        sql.push(" GROUP BY page ORDER BY views DESC, page ASC LIMIT ?, ?")
            .number(offset)
            .number(limit);
        let mut rows: Vec<PageRow> = self.run(sql).fetch_all().await?;
        if rows.is_empty() {
            return Ok(rows);
        }
        let mut sql = Sql::new(
            "SELECT page, anyLastMerge(path) AS path, anyLastMerge(title) AS title \
             FROM page_days WHERE site = ? AND day >= toDate(?) AND day <= toDate(?) AND ",
        );
        sql.text(&r.site).text(&r.first_day).text(&r.last_day);
        sql.page_in(rows.iter().map(|p| p.page.as_str()));
        sql.push(" GROUP BY page");
        let names: Vec<PageName> = self.run(sql).fetch_all().await?;
        let names: std::collections::HashMap<&str, &PageName> =
            names.iter().map(|n| (n.page.as_str(), n)).collect();
        for p in &mut rows {
            p.visitors = p.visitors.min(p.views);
            if let Some(n) = names.get(p.page.as_str()) {
                p.path.clone_from(&n.path);
                p.title.clone_from(&n.title);
            }
        }
        Ok(rows)
    }

    /// The values of `dim` among the page views matching `f`, by views (then name), at most
    /// `limit`. UTM breakdowns leave out views without the parameter.
    pub async fn breakdown(
        &self,
        r: &Range,
        f: &Filters,
        dim: Dimension,
        limit: u32,
    ) -> Result<Vec<NameRow>> {
        let mut sql = Sql::new("SELECT ");
        match dim {
            Dimension::Browser | Dimension::Os => {
                let (old, new): (Vec<&str>, Vec<&str>) = EARLIER_NAMES.iter().copied().unzip();
                let col = column(dim);
                sql.push(&format!("transform({col}, ?, ?, {col})"))
                    .texts(old.into_iter().map(str::to_owned).collect())
                    .texts(new.into_iter().map(str::to_owned).collect());
            }
            _ => {
                sql.push(column(dim));
            }
        }
        sql.push(
            " AS name, count() AS views, uniqCombined(visitor) AS visitors FROM events WHERE ",
        );
        sql.views(r, f);
        if matches!(
            dim,
            Dimension::UtmSource | Dimension::UtmMedium | Dimension::UtmCampaign
        ) {
            sql.push(" AND ").push(column(dim)).push(" != ''");
        }
        sql.push(" GROUP BY name ORDER BY views DESC, name ASC LIMIT ?")
            .number(limit);
        let mut rows: Vec<NameRow> = self.run(sql).fetch_all().await?;
        for row in &mut rows {
            row.visitors = row.visitors.min(row.views);
        }
        Ok(rows)
    }

    /// Pages where visits with a view matching `f` started, by visits (then page), at most
    /// `limit`; a bounce is a visit with no second page view.
    pub async fn entry_pages(&self, r: &Range, f: &Filters, limit: u32) -> Result<Vec<EntryRow>> {
        let mut sql = Sql::new(
            "SELECT page, anyLast(title) AS title, count() AS entries, \
             uniqCombined(visitor) AS visitors, \
             countIf(session NOT IN (SELECT session FROM events WHERE ",
        );
        sql.range(r, "'pageview'");
        sql.push(" AND visit_seq = 2)) AS bounces FROM events WHERE ");
        sql.range(r, "'pageview'");
        sql.push(" AND visit_seq = 1");
        sql.matching_visits(r, f);
        sql.push(" GROUP BY page ORDER BY entries DESC, page ASC LIMIT ?")
            .number(limit);
        let mut rows: Vec<EntryRow> = self.run(sql).fetch_all().await?;
        for row in &mut rows {
            row.visitors = row.visitors.min(row.entries);
        }
        Ok(rows)
    }

    /// Pages where visits with a view matching `f` ended (their last page view in the
    /// range), by exits (then page), at most `limit`.
    pub async fn exit_pages(&self, r: &Range, f: &Filters, limit: u32) -> Result<Vec<ExitRow>> {
        let mut sql = Sql::new(
            "SELECT last AS page, count() AS exits FROM ( \
             SELECT session, argMax(page, visit_seq) AS last FROM events WHERE ",
        );
        sql.range(r, "'pageview'");
        sql.matching_visits(r, f);
        sql.push(" GROUP BY session) GROUP BY page ORDER BY exits DESC, page ASC LIMIT ?")
            .number(limit);
        Ok(self.run(sql).fetch_all().await?)
    }

    /// The matching views and last titles of `pages`.
    pub async fn page_views(
        &self,
        r: &Range,
        f: &Filters,
        pages: &[String],
    ) -> Result<Vec<PageViews>> {
        if pages.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql =
            Sql::new("SELECT page, anyLast(title) AS title, count() AS views FROM events WHERE ");
        sql.views(r, f);
        sql.push(" AND has(?, page)").texts(pages.to_vec());
        sql.push(" GROUP BY page");
        Ok(self.run(sql).fetch_all().await?)
    }

    /// Engaged time and entry bounces of `pages`, in visits with a view matching `f`.
    ///
    /// Engaged time is the time between a page's events counted while the page was visible:
    /// the tracker sends a heartbeat every `tracking.heartbeat` only while the page is visible
    /// and a `leave` when it goes, so each ping's and leave's gap since the visit's previous
    /// event counts up to `cap_ms` (a longer gap held hidden time).
    pub async fn engagement(
        &self,
        r: &Range,
        f: &Filters,
        pages: &[String],
        cap_ms: u32,
    ) -> Result<Vec<Engagement>> {
        if pages.is_empty() {
            return Ok(Vec::new());
        }
        // `page_events` is ordered by page: `page IN (…)` reads the pages' rows alone (`has`
        // would not use the order). The visits that did not bounce are the sessions with a
        // second page view (migration 12).
        let mut sql = Sql::new(
            "SELECT page, sumIf(least(toUInt64(gap_ms), ?), is_view = 0) AS engaged_ms, \
             countIf(is_view = 1) AS views, countIf(is_view = 1 AND visit_seq = 1) AS entries, \
             countIf(is_view = 1 AND visit_seq = 1 AND session NOT IN (SELECT session FROM second_views WHERE ",
        );
        sql.number(cap_ms);
        sql.span(r);
        sql.push(")) AS bounces FROM page_events WHERE ");
        sql.span(r);
        sql.push(" AND ");
        sql.page_in(pages.iter().map(String::as_str));
        sql.matching_visits(r, f);
        sql.push(" GROUP BY page");
        Ok(self.run(sql).fetch_all().await?)
    }
}

/// What a custom events report groups by.
#[derive(Debug, Clone, Copy)]
pub enum EventsBy<'a> {
    /// The events' names.
    Name,
    /// The targets of the events named so (e.g. the files downloaded).
    Target(&'a str),
    /// The values of one property of the events named so.
    Prop(&'a str, &'a str),
}

/// A value of a custom events report (a name, a target or a property value) and its figures.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, clickhouse::Row)]
pub struct CountRow {
    pub value: String,
    pub events: u64,
    pub visitors: u64,
}

impl Db {
    /// Custom events of `r` grouped `by`, most first (then by value), at most `limit`; with
    /// filters, the events of the visits holding a page view that matches `f`.
    pub async fn custom_events(
        &self,
        r: &Range,
        f: &Filters,
        by: EventsBy<'_>,
        limit: u32,
    ) -> Result<Vec<CountRow>> {
        // The value's alias is not `name`: ClickHouse would read an alias in WHERE first.
        let mut sql = Sql::new("SELECT ");
        match by {
            EventsBy::Name => {
                sql.push("name");
            }
            EventsBy::Target(_) => {
                sql.push("target");
            }
            EventsBy::Prop(_, prop) => {
                sql.push("prop_values[indexOf(prop_keys, ?)]").text(prop);
            }
        }
        sql.push(
            " AS value, count() AS events, uniqCombined(visitor) AS visitors FROM events WHERE ",
        );
        sql.range(r, "'event'");
        match by {
            EventsBy::Name => {}
            EventsBy::Target(name) => {
                sql.push(" AND name = ?").text(name);
            }
            EventsBy::Prop(name, prop) => {
                sql.push(" AND name = ? AND has(prop_keys, ?)")
                    .text(name)
                    .text(prop);
            }
        }
        sql.matching_visits(r, f);
        sql.push(" GROUP BY value ORDER BY events DESC, value ASC LIMIT ?")
            .number(limit);
        let mut rows: Vec<CountRow> = self.run(sql).fetch_all().await?;
        for row in &mut rows {
            row.visitors = row.visitors.min(row.events);
        }
        Ok(rows)
    }
}

/// A goal's figures over a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conversions {
    /// Page views or events that reached the goal.
    pub conversions: u64,
    /// Unique visitors among those who reached it.
    pub visitors: u64,
}

#[derive(serde::Deserialize, clickhouse::Row)]
struct GoalCounts {
    conversions: Vec<u64>,
    visitors: Vec<u64>,
}

impl Sql {
    /// The condition an event of `events` meets when it reaches `goal`.
    fn goal(&mut self, goal: &crate::Goal) -> &mut Self {
        if goal.event.is_empty() {
            return self
                .push("kind = 'pageview' AND match(page, ?)")
                .text(&goal.page_regex());
        }
        self.push("kind = 'event' AND name = ?").text(&goal.event);
        if !goal.prop.is_empty() {
            self.push(" AND has(prop_keys, ?) AND prop_values[indexOf(prop_keys, ?)] = ?")
                .text(&goal.prop)
                .text(&goal.prop)
                .text(&goal.value);
        }
        self
    }
}

impl Db {
    /// The conversions of each of `goals` in `r`, in their order; with filters, in the visits
    /// holding a page view that matches `f`.
    pub async fn goal_conversions(
        &self,
        r: &Range,
        f: &Filters,
        goals: &[crate::Goal],
    ) -> Result<Vec<Conversions>> {
        if goals.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = Sql::new("SELECT [");
        for (i, goal) in goals.iter().enumerate() {
            sql.push(if i == 0 { "countIf(" } else { ", countIf(" });
            sql.goal(goal).push(")");
        }
        sql.push("] AS conversions, [");
        for (i, goal) in goals.iter().enumerate() {
            sql.push(if i == 0 {
                "uniqCombinedIf(visitor, "
            } else {
                ", uniqCombinedIf(visitor, "
            });
            sql.goal(goal).push(")");
        }
        sql.push("] AS visitors FROM events WHERE ");
        sql.range(r, "'pageview', 'event'");
        sql.matching_visits(r, f);
        let counts: GoalCounts = self.run(sql).fetch_one().await?;
        Ok(counts
            .conversions
            .into_iter()
            .zip(counts.visitors)
            .map(|(conversions, visitors)| Conversions {
                conversions,
                visitors: visitors.min(conversions),
            })
            .collect())
    }
}
