//! Goals: what counts as a conversion on a site (`GET/POST /api/v1/sites/{site}/goals`,
//! `DELETE …/goals/{id}`), and their conversions (`stats/goals`). A goal is a page pattern
//! (`/thu-tuc/*`, or a `data-page` key such as `bai-viet-*`: `*` matches any characters) or a custom event's name, optionally with one
//! property's value. Anyone who may read a site lists its goals; owners and the site's
//! admins add and remove them.

use std::sync::Arc;

use axum::{
    extract::State as AxumState,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use tally_clickhouse::Goal;
use tally_core::event::{MAX_NAME, MAX_PROP_KEY, MAX_PROP_VALUE};
use utoipa::{IntoParams, ToSchema};

use crate::{
    ApiError, State,
    auth::Admin,
    error::{AdminErrors, ErrorBody, Json, Path, Query},
    stats::{
        FilterQuery, FormatQuery, RangeQuery, SitePath, Tabular, answer, range, raw_gone, raw_kept,
    },
};

/// Goals a site may have.
const MAX_GOALS: usize = 100;
/// The longest page pattern, in characters.
const MAX_PATTERN: usize = 512;
/// The longest goal name, in characters.
const MAX_GOAL_NAME: usize = 100;

/// A new goal: `page`, or `event` with optionally `prop` and `value`.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewGoal {
    /// What the statistics call it (default: the page pattern or the event).
    name: Option<String>,
    /// A page pattern: a path (`/thu-tuc/*`) or a `data-page` key (`bai-viet-*`), as the
    /// pages report shows them; `*` matches any characters.
    page: Option<String>,
    /// A custom event's name (`download`, `outbound`, or the site's own).
    event: Option<String>,
    /// With `event`: a property the event must carry…
    prop: Option<String>,
    /// …with this value.
    value: Option<String>,
}

/// A goal as listed.
#[derive(Serialize, ToSchema)]
pub(crate) struct GoalBody {
    id: String,
    name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    page: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    event: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    prop: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    value: String,
    created_by: String,
    /// Seconds since the epoch.
    created_at: u32,
}

impl From<Goal> for GoalBody {
    fn from(g: Goal) -> Self {
        Self {
            id: g.id,
            name: g.name,
            page: g.page,
            event: g.event,
            prop: g.prop,
            value: g.value,
            created_by: g.created_by,
            created_at: g.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct GoalsBody {
    goals: Vec<GoalBody>,
}

/// `value` trimmed, when given and not empty: 1 to `max` characters, none of them control
/// characters.
fn text(value: Option<String>, field: &str, max: usize) -> Result<Option<String>, ApiError> {
    let Some(v) = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!(
            "`{field}` must be 1 to {max} characters, none of them control characters"
        )));
    }
    Ok(Some(v))
}

/// The goal `new` describes, checked: its name (default: what reaches it), page pattern,
/// event, property and value, the unused ones empty.
fn checked(new: NewGoal, site: &str) -> Result<Goal, ApiError> {
    let name = text(new.name, "name", MAX_GOAL_NAME)?;
    let page = text(new.page, "page", MAX_PATTERN)?;
    let event = text(new.event, "event", MAX_NAME)?;
    let prop = text(new.prop, "prop", MAX_PROP_KEY)?;
    let value = new
        .value
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty());
    if value
        .as_ref()
        .is_some_and(|v| v.chars().count() > MAX_PROP_VALUE || v.chars().any(char::is_control))
    {
        return Err(ApiError::BadRequest(format!(
            "`value` must be at most {MAX_PROP_VALUE} characters, none of them control characters"
        )));
    }
    let bad = |m: &str| Err(ApiError::BadRequest(m.to_owned()));
    match (&page, &event, &prop, &value) {
        (Some(_), Some(_), _, _) | (None, None, _, _) => {
            return bad("a goal has either `page` or `event`");
        }
        (Some(_), None, Some(_), _) | (Some(_), None, _, Some(_)) => {
            return bad("`prop` and `value` go with `event`, not `page`");
        }
        (None, Some(_), Some(_), None) => return bad("`value` is required with `prop`"),
        (None, Some(_), None, Some(_)) => return bad("`prop` is required with `value`"),
        _ => {}
    }
    let mut goal = Goal {
        id: format!("{:016x}", rand::random::<u64>()),
        site: site.to_owned(),
        name: String::new(),
        page: page.unwrap_or_default(),
        event: event.unwrap_or_default(),
        prop: prop.unwrap_or_default(),
        value: value.unwrap_or_default(),
        created_by: String::new(),
        created_at: 0,
    };
    goal.name = name.unwrap_or_else(|| goal.describe());
    Ok(goal)
}

/// The site of a request, which this principal may edit.
fn editable_site(state: &State, admin: &Admin, site: &str) -> Result<tally_core::SiteId, ApiError> {
    let id = admin.site(state, site)?;
    if !admin.0.may_edit(&id) {
        return Err(ApiError::NotAllowed(format!(
            "only an owner or an admin of `{id}` may change its goals"
        )));
    }
    Ok(id)
}

/// Adds a goal (owners and the site's admins).
#[utoipa::path(
    post,
    path = "/api/v1/sites/{site}/goals",
    tag = "admin",
    security(("bearer" = [])),
    params(SitePath),
    request_body(content = NewGoal, description = "`{\"page\": \"/thu-tuc/*\"}` or `{\"event\": \"download\", \"prop\": \"kind\", \"value\": \"form\"}`"),
    responses(
        (status = 201, description = "Added", body = GoalBody),
        (status = 400, description = "A field is invalid; the message names it", body = ErrorBody),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 403, description = "The token may not change this site", body = ErrorBody),
        (status = 404, description = "Unknown site", body = ErrorBody),
        (status = 409, description = "The same goal exists, or the site has 100 goals", body = ErrorBody),
        (status = 429, description = "Too many wrong tokens from this address in a minute", body = ErrorBody),
        (status = 503, description = "ClickHouse is unavailable", body = ErrorBody),
    ),
)]
pub(crate) async fn create(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
    Path(site): Path<String>,
    Json(new): Json<NewGoal>,
) -> Result<Response, ApiError> {
    let id = editable_site(&state, &admin, &site)?;
    let mut goal = checked(new, id.as_str())?;
    let goals = state.db.goals(id.as_str()).await?;
    if goals.len() >= MAX_GOALS {
        return Err(ApiError::Conflict(format!(
            "`{id}` has {MAX_GOALS} goals, the most a site may have"
        )));
    }
    fn same(g: &Goal) -> (&str, &str, &str, &str) {
        (&g.page, &g.event, &g.prop, &g.value)
    }
    if goals.iter().any(|g| same(g) == same(&goal)) {
        return Err(ApiError::Conflict("the site has this goal already".into()));
    }
    goal.created_by = admin.0.actor();
    goal.created_at = u32::try_from(state.clock.now().timestamp()).unwrap_or(u32::MAX);
    state.db.save_goal(&goal).await?;
    state
        .db
        .audit(&admin.0.actor(), "goal.created", id.as_str(), &goal.name)
        .await?;
    Ok((StatusCode::CREATED, Json(GoalBody::from(goal))).into_response())
}

/// The site's goals.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/goals",
    tag = "admin",
    security(("bearer" = [])),
    params(SitePath),
    responses((status = 200, description = "OK", body = GoalsBody), AdminErrors),
)]
pub(crate) async fn list(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
    Path(site): Path<String>,
) -> Result<Json<GoalsBody>, ApiError> {
    let id = admin.site(&state, &site)?;
    let goals = state.db.goals(id.as_str()).await?;
    Ok(Json(GoalsBody {
        goals: goals.into_iter().map(GoalBody::from).collect(),
    }))
}

/// A site and one of its goals.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // read by axum's Path extractor as plain Strings
pub(crate) struct GoalPath {
    /// Site id.
    #[param(pattern = "^[a-z0-9_-]{1,64}$")]
    site: String,
    /// The goal's id.
    id: String,
}

/// Removes a goal (owners and the site's admins).
#[utoipa::path(
    delete,
    path = "/api/v1/sites/{site}/goals/{id}",
    tag = "admin",
    security(("bearer" = [])),
    params(GoalPath),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 403, description = "The token may not change this site", body = ErrorBody),
        (status = 404, description = "Unknown site or goal", body = ErrorBody),
        (status = 429, description = "Too many wrong tokens from this address in a minute", body = ErrorBody),
        (status = 503, description = "ClickHouse is unavailable", body = ErrorBody),
    ),
)]
pub(crate) async fn delete(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
    Path((site, goal)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = editable_site(&state, &admin, &site)?;
    let Some(found) = state
        .db
        .goals(id.as_str())
        .await?
        .into_iter()
        .find(|g| g.id == goal)
    else {
        return Err(ApiError::NotFound);
    };
    state.db.delete_goal(&found).await?;
    state
        .db
        .audit(&admin.0.actor(), "goal.deleted", id.as_str(), &found.name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A goal's conversions over a range.
#[derive(Serialize, ToSchema)]
pub(crate) struct ConversionBody {
    id: String,
    pub(crate) name: String,
    /// What reaches it: the page pattern, or the event (and its property's value).
    #[serde(skip)]
    pub(crate) what: String,
    /// Page views or events that reached the goal.
    pub(crate) conversions: u64,
    /// Unique visitors who reached it.
    pub(crate) visitors: u64,
    /// `visitors` over the range's unique visitors (0 to 1).
    pub(crate) conversion_rate: f64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ConversionsBody {
    /// The range's unique visitors (matching the filters): the rates' denominator.
    visitors: u64,
    pub(crate) goals: Vec<ConversionBody>,
}

impl Tabular for ConversionsBody {
    fn header(&self) -> &'static [&'static str] {
        &["goal", "conversions", "visitors", "conversion_rate"]
    }

    fn rows(&self) -> Vec<Vec<String>> {
        self.goals
            .iter()
            .map(|g| {
                vec![
                    g.name.clone(),
                    g.conversions.to_string(),
                    g.visitors.to_string(),
                    format!("{:.4}", g.conversion_rate),
                ]
            })
            .collect()
    }
}

/// The conversions of `goals` over `r` (raw events; with filters, in the matching visits).
pub(crate) async fn conversions_of(
    state: &State,
    r: &tally_clickhouse::stats::Range,
    f: &tally_clickhouse::explore::Filters,
    goals: Vec<Goal>,
) -> Result<ConversionsBody, ApiError> {
    let (summary, counts) = tokio::try_join!(crate::stats::summary_of(state, r, f), async {
        Ok(state.db.goal_conversions(r, f, &goals).await?)
    },)?;
    let visitors = summary.visitors;
    Ok(ConversionsBody {
        visitors,
        goals: goals
            .into_iter()
            .zip(counts)
            .map(|(g, c)| ConversionBody {
                what: g.describe(),
                id: g.id,
                name: g.name,
                conversions: c.conversions,
                visitors: c.visitors,
                conversion_rate: if visitors == 0 {
                    0.0
                } else {
                    (c.visitors as f64 / visitors as f64).min(1.0)
                },
            })
            .collect(),
    })
}

/// The site's goals and their conversions: page views or events that reached each one,
/// the unique visitors who did, and the share of the range's visitors they are.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/stats/goals",
    tag = "admin",
    security(("bearer" = [])),
    params(SitePath, RangeQuery, FilterQuery, FormatQuery),
    responses(
        (status = 200, description = "OK", content(
            (ConversionsBody = "application/json"),
            (String = "text/csv"),
        )),
        AdminErrors,
    ),
)]
pub(crate) async fn stats(
    AxumState(state): AxumState<Arc<State>>,
    admin: Admin,
    Path(site): Path<String>,
    Query(q): Query<RangeQuery>,
    Query(fq): Query<FilterQuery>,
    Query(format): Query<FormatQuery>,
) -> Result<Response, ApiError> {
    let (id, days, r) = range(&state, &admin, &site, &q)?;
    let f = fq.filters()?;
    let csv = format.csv()?;
    if !raw_kept(&state, &days) {
        return Err(raw_gone(&state, "goals"));
    }
    let goals = state.db.goals(id.as_str()).await?;
    let body = conversions_of(&state, &r, &f, goals).await?;
    answer(body, csv, &id, "goals", &days)
}
