//! Goals as stored: table `goals` of migration 14. Their conversions are counted by
//! [`Db::goal_conversions`](crate::Db::goal_conversions).

use serde::{Deserialize, Serialize};

use crate::{Db, Result};

/// A goal: a page pattern (`page`, where `*` matches any characters), or a custom event's
/// name (`event`), optionally with one property's value (`prop` = `value`). Exactly one of
/// `page` and `event` is set; the others are empty when unused.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct Goal {
    pub id: String,
    pub site: String,
    /// What the statistics call it.
    pub name: String,
    pub page: String,
    pub event: String,
    pub prop: String,
    pub value: String,
    pub created_by: String,
    /// Seconds since the epoch.
    pub created_at: u32,
}

impl Goal {
    /// What reaches it, as shown: the page pattern, the event, or `event: prop = value`.
    pub fn describe(&self) -> String {
        match (self.event.is_empty(), self.prop.is_empty()) {
            (true, _) => self.page.clone(),
            (false, true) => self.event.clone(),
            (false, false) => format!("{}: {} = {}", self.event, self.prop, self.value),
        }
    }

    /// The regular expression (RE2, anchored) of a page goal's pattern: `*` matches any
    /// characters, everything else itself.
    pub fn page_regex(&self) -> String {
        let mut re = String::from("^");
        for (i, part) in self.page.split('*').enumerate() {
            if i > 0 {
                re.push_str(".*");
            }
            re.push_str(&regex_escape(part));
        }
        re.push('$');
        re
    }
}

/// `s` with RE2's special characters escaped.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[derive(clickhouse::Row, Serialize)]
struct GoalRow {
    id: String,
    version: u64,
    deleted: u8,
    site: String,
    name: String,
    page: String,
    event: String,
    prop: String,
    value: String,
    created_by: String,
    created_at: u32,
}

impl Db {
    /// The goals of `site`, in the order they were made (their first version).
    pub async fn goals(&self, site: &str) -> Result<Vec<Goal>> {
        Ok(self
            .query(
                "SELECT id, argMax(site, version), argMax(name, version), argMax(page, version), \
                 argMax(event, version), argMax(prop, version), argMax(value, version), \
                 argMax(created_by, version), argMax(created_at, version) FROM goals \
                 GROUP BY id HAVING argMax(deleted, version) = 0 AND argMax(site, version) = ? \
                 ORDER BY min(version), id",
            )
            .bind(site)
            .fetch_all()
            .await?)
    }

    /// Stores a new goal.
    pub async fn save_goal(&self, goal: &Goal) -> Result<()> {
        self.write_goal(goal, 0).await
    }

    /// Removes a goal.
    pub async fn delete_goal(&self, goal: &Goal) -> Result<()> {
        self.write_goal(goal, 1).await
    }

    async fn write_goal(&self, g: &Goal, deleted: u8) -> Result<()> {
        let row = GoalRow {
            id: g.id.clone(),
            version: u64::try_from(chrono::Utc::now().timestamp_micros()).unwrap_or(0),
            deleted,
            site: g.site.clone(),
            name: g.name.clone(),
            page: g.page.clone(),
            event: g.event.clone(),
            prop: g.prop.clone(),
            value: g.value.clone(),
            created_by: g.created_by.clone(),
            created_at: g.created_at,
        };
        self.insert_one("goals", &row).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(p: &str) -> Goal {
        Goal {
            id: String::new(),
            site: String::new(),
            name: String::new(),
            page: p.to_owned(),
            event: String::new(),
            prop: String::new(),
            value: String::new(),
            created_by: String::new(),
            created_at: 0,
        }
    }

    #[test]
    fn page_patterns_become_anchored_expressions() {
        assert_eq!(page("/thu-tuc/*").page_regex(), "^/thu-tuc/.*$");
        assert_eq!(page("/a.html").page_regex(), "^/a\\.html$");
        assert_eq!(page("/*/lien-he").page_regex(), "^/.*/lien-he$");
        assert_eq!(page("/(x)?").page_regex(), "^/\\(x\\)\\?$");
    }
}
