//! Personal API tokens as stored: table `api_tokens` of migration 10.

use serde::{Deserialize, Serialize};

use crate::{Db, Result};

/// A personal token as stored: `token_hash` is the SHA-256 (hex) of the token.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: String,
    pub person: String,
    pub label: String,
    pub token_hash: String,
    /// Empty: every site of the person.
    pub sites: Vec<String>,
    pub read_only: u8,
    /// Seconds since the epoch.
    pub created_at: u32,
}

#[derive(clickhouse::Row, Serialize)]
struct TokenRow {
    id: String,
    version: u64,
    deleted: u8,
    person: String,
    label: String,
    token_hash: String,
    sites: Vec<String>,
    read_only: u8,
    created_at: u32,
}

const CURRENT: &str = "SELECT id, argMax(person, version), argMax(label, version), \
     argMax(token_hash, version), argMax(sites, version), argMax(read_only, version), \
     argMax(created_at, version) FROM api_tokens GROUP BY id \
     HAVING argMax(deleted, version) = 0";

impl Db {
    /// The tokens of `person`, oldest first.
    pub async fn api_tokens(&self, person: &str) -> Result<Vec<ApiToken>> {
        Ok(self
            .query(&format!(
                "{CURRENT} AND argMax(person, version) = ? ORDER BY argMax(created_at, version), id"
            ))
            .bind(person)
            .fetch_all()
            .await?)
    }

    /// The token whose SHA-256 is `token_hash`.
    pub async fn api_token_by_hash(&self, token_hash: &str) -> Result<Option<ApiToken>> {
        Ok(self
            .query(&format!("{CURRENT} AND argMax(token_hash, version) = ?"))
            .bind(token_hash)
            .fetch_all::<ApiToken>()
            .await?
            .into_iter()
            .next())
    }

    pub async fn save_api_token(&self, token: &ApiToken) -> Result<()> {
        self.write_api_token(token, 0).await
    }

    pub async fn revoke_api_token(&self, token: &ApiToken) -> Result<()> {
        self.write_api_token(token, 1).await
    }

    async fn write_api_token(&self, t: &ApiToken, deleted: u8) -> Result<()> {
        let row = TokenRow {
            id: t.id.clone(),
            version: u64::try_from(chrono::Utc::now().timestamp_micros()).unwrap_or(0),
            deleted,
            person: t.person.clone(),
            label: t.label.clone(),
            token_hash: t.token_hash.clone(),
            sites: t.sites.clone(),
            read_only: t.read_only,
            created_at: t.created_at,
        };
        self.insert_one("api_tokens", &row).await
    }
}
