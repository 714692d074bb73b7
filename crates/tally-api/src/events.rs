//! Statistics of custom events (downloads, outbound links, the site's own events): the
//! events by name, the targets of one name, the values of one property.

use std::sync::Arc;

use axum::{extract::State as AxumState, response::Response};
use serde::{Deserialize, Serialize};
use tally_clickhouse::explore::{CountRow, EventsBy};
use tally_core::event::{MAX_NAME, MAX_PROP_KEY};
use utoipa::{IntoParams, ToSchema};

use crate::{
    ApiError, State,
    auth::Admin,
    error::{AdminErrors, Path, Query},
    stats::{
        FilterQuery, FormatQuery, MAX_LIMIT, RowsQuery, SitePath, Tabular, answer, number, range,
        raw_gone, raw_kept,
    },
};

/// A custom event's name.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventQuery {
    /// The event's name (`download`, `outbound`, or the site's own).
    #[param(min_length = 1, max_length = 64)]
    name: Option<String>,
}

/// A custom event's name and the property whose values `props` counts.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PropQuery {
    /// The event's name.
    #[param(min_length = 1, max_length = 64)]
    name: Option<String>,
    #[param(min_length = 1, max_length = 64)]
    prop: Option<String>,
}

/// The value of `field`, required and 1 to `max` characters (the beacon's bound).
fn required<'a>(value: Option<&'a String>, field: &str, max: usize) -> Result<&'a str, ApiError> {
    match value.map(|v| v.trim()) {
        Some(v) if (1..=max).contains(&v.chars().count()) => Ok(v),
        _ => Err(ApiError::BadRequest(format!(
            "`{field}` is required: 1 to {max} characters"
        ))),
    }
}

/// A row of a custom events report.
#[derive(Serialize, ToSchema)]
pub(crate) struct EventRowBody {
    /// The event's name (`events`), its target URL (`targets`) or the property's value
    /// (`props`).
    value: String,
    events: u64,
    /// Unique visitors among those who sent the events.
    visitors: u64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct EventRowsBody {
    rows: Vec<EventRowBody>,
}

impl Tabular for EventRowsBody {
    fn header(&self) -> &'static [&'static str] {
        &["value", "events", "visitors"]
    }

    fn rows(&self) -> Vec<Vec<String>> {
        self.rows
            .iter()
            .map(|r| {
                vec![
                    r.value.clone(),
                    r.events.to_string(),
                    r.visitors.to_string(),
                ]
            })
            .collect()
    }
}

impl From<Vec<CountRow>> for EventRowsBody {
    fn from(rows: Vec<CountRow>) -> Self {
        Self {
            rows: rows
                .into_iter()
                .map(|r| EventRowBody {
                    value: r.value,
                    events: r.events,
                    visitors: r.visitors,
                })
                .collect(),
        }
    }
}

/// One report of custom events grouped `by`.
async fn report(
    state: Arc<State>,
    admin: Admin,
    site: String,
    (q, fq, format): (RowsQuery, FilterQuery, FormatQuery),
    by: EventsBy<'_>,
    name: &str,
) -> Result<Response, ApiError> {
    let (id, days, r) = range(&state, &admin, &site, &q)?;
    let f = fq.filters()?;
    let csv = format.csv()?;
    let limit = number(q.limit(), "limit", 20, MAX_LIMIT)?;
    if !raw_kept(&state, &days) {
        return Err(raw_gone(&state, "custom events"));
    }
    let rows = state.db.custom_events(&r, &f, by, limit).await?;
    answer(EventRowsBody::from(rows), csv, &id, name, &days)
}

/// Custom events by name: events and unique visitors.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/stats/events",
    tag = "admin",
    security(("bearer" = [])),
    params(SitePath, RowsQuery, FilterQuery, FormatQuery),
    responses(
        (status = 200, description = "OK", content(
            (EventRowsBody = "application/json"),
            (String = "text/csv"),
        )),
        AdminErrors,
    ),
)]
pub(crate) async fn events(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
    Path(site): Path<String>,
    Query(q): Query<RowsQuery>,
    Query(fq): Query<FilterQuery>,
    Query(format): Query<FormatQuery>,
) -> Result<Response, ApiError> {
    report(
        state,
        admin,
        site,
        (q, fq, format),
        EventsBy::Name,
        "events",
    )
    .await
}

/// The targets of the events named `name` (e.g. the most downloaded files).
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/stats/events/targets",
    tag = "admin",
    security(("bearer" = [])),
    params(SitePath, RowsQuery, EventQuery, FilterQuery, FormatQuery),
    responses(
        (status = 200, description = "OK", content(
            (EventRowsBody = "application/json"),
            (String = "text/csv"),
        )),
        AdminErrors,
    ),
)]
pub(crate) async fn targets(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
    Path(site): Path<String>,
    Query(q): Query<RowsQuery>,
    Query(eq): Query<EventQuery>,
    Query(fq): Query<FilterQuery>,
    Query(format): Query<FormatQuery>,
) -> Result<Response, ApiError> {
    let name = required(eq.name.as_ref(), "name", MAX_NAME)?;
    let by = EventsBy::Target(name);
    report(state, admin, site, (q, fq, format), by, "event-targets").await
}

/// The values of the property `prop` of the events named `name`.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/stats/events/props",
    tag = "admin",
    security(("bearer" = [])),
    params(SitePath, RowsQuery, PropQuery, FilterQuery, FormatQuery),
    responses(
        (status = 200, description = "OK", content(
            (EventRowsBody = "application/json"),
            (String = "text/csv"),
        )),
        AdminErrors,
    ),
)]
pub(crate) async fn props(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
    Path(site): Path<String>,
    Query(q): Query<RowsQuery>,
    Query(pq): Query<PropQuery>,
    Query(fq): Query<FilterQuery>,
    Query(format): Query<FormatQuery>,
) -> Result<Response, ApiError> {
    let name = required(pq.name.as_ref(), "name", MAX_NAME)?;
    let prop = required(pq.prop.as_ref(), "prop", MAX_PROP_KEY)?;
    let by = EventsBy::Prop(name, prop);
    report(state, admin, site, (q, fq, format), by, "event-props").await
}
