//! People (accounts) as stored: table `people` of migration 10.

use serde::{Deserialize, Serialize};

use crate::{Db, Result};

/// A person as stored. `password_hash` is argon2id in PHC form (empty until the invitation
/// is accepted); `invite_hash` the SHA-256 (hex) of the one-time link's secret (empty once
/// used).
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct Person {
    pub name: String,
    pub role: String,
    pub sites: Vec<String>,
    pub password_hash: String,
    pub invite_hash: String,
    /// Seconds since the epoch.
    pub invite_expires: u32,
}

#[derive(clickhouse::Row, Serialize)]
struct PersonRow {
    name: String,
    version: u64,
    deleted: u8,
    role: String,
    sites: Vec<String>,
    password_hash: String,
    invite_hash: String,
    invite_expires: u32,
    changed_at: u32,
}

const CURRENT: &str = "SELECT name, argMax(role, version), argMax(sites, version), \
     argMax(password_hash, version), argMax(invite_hash, version), \
     argMax(invite_expires, version) FROM people GROUP BY name \
     HAVING argMax(deleted, version) = 0";

impl Db {
    /// Everyone, by name.
    pub async fn people(&self) -> Result<Vec<Person>> {
        Ok(self
            .query(&format!("{CURRENT} ORDER BY name"))
            .fetch_all()
            .await?)
    }

    /// The person called `name`, if there is one.
    pub async fn person(&self, name: &str) -> Result<Option<Person>> {
        Ok(self
            .query(&format!("{CURRENT} AND name = ?"))
            .bind(name)
            .fetch_all::<Person>()
            .await?
            .into_iter()
            .next())
    }

    /// The person whose pending invitation has the hash `invite_hash`.
    pub async fn person_invited(&self, invite_hash: &str) -> Result<Option<Person>> {
        Ok(self
            .query(&format!(
                "{CURRENT} AND argMax(invite_hash, version) = ? AND ? != ''"
            ))
            .bind(invite_hash)
            .bind(invite_hash)
            .fetch_all::<Person>()
            .await?
            .into_iter()
            .next())
    }

    /// Stores `person` as the newest version of their name.
    pub async fn save_person(&self, person: &Person) -> Result<()> {
        self.write_person(person, 0).await
    }

    /// Removes the person called `name`.
    pub async fn delete_person(&self, name: &str) -> Result<()> {
        let gone = Person {
            name: name.into(),
            role: String::new(),
            sites: Vec::new(),
            password_hash: String::new(),
            invite_hash: String::new(),
            invite_expires: 0,
        };
        self.write_person(&gone, 1).await
    }

    async fn write_person(&self, p: &Person, deleted: u8) -> Result<()> {
        let now = chrono::Utc::now();
        let row = PersonRow {
            name: p.name.clone(),
            version: u64::try_from(now.timestamp_micros()).unwrap_or(0),
            deleted,
            role: p.role.clone(),
            sites: p.sites.clone(),
            password_hash: p.password_hash.clone(),
            invite_hash: p.invite_hash.clone(),
            invite_expires: p.invite_expires,
            changed_at: u32::try_from(now.timestamp()).unwrap_or(u32::MAX),
        };
        self.insert_one("people", &row).await
    }
}
