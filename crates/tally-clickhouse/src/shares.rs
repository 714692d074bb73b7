//! Shared dashboards as stored: table `shares` of migration 10.

use serde::{Deserialize, Serialize};

use crate::{Db, Result};

/// A share as stored: `secret_hash` is the SHA-256 (hex) of its link's secret,
/// `password_hash` argon2id (PHC) or empty for a link without a password.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct Share {
    pub id: String,
    pub site: String,
    pub secret_hash: String,
    pub password_hash: String,
    pub created_by: String,
    /// Seconds since the epoch.
    pub created_at: u32,
}

#[derive(clickhouse::Row, Serialize)]
struct ShareRow {
    id: String,
    version: u64,
    deleted: u8,
    site: String,
    secret_hash: String,
    password_hash: String,
    created_by: String,
    created_at: u32,
}

const CURRENT: &str = "SELECT id, argMax(site, version), argMax(secret_hash, version), \
     argMax(password_hash, version), argMax(created_by, version), argMax(created_at, version) \
     FROM shares GROUP BY id HAVING argMax(deleted, version) = 0";

impl Db {
    /// The shares of `site`, oldest first.
    pub async fn shares(&self, site: &str) -> Result<Vec<Share>> {
        Ok(self
            .query(&format!(
                "{CURRENT} AND argMax(site, version) = ? ORDER BY argMax(created_at, version), id"
            ))
            .bind(site)
            .fetch_all()
            .await?)
    }

    /// The share whose secret has the hash `secret_hash`.
    pub async fn share_by_secret(&self, secret_hash: &str) -> Result<Option<Share>> {
        Ok(self
            .query(&format!("{CURRENT} AND argMax(secret_hash, version) = ?"))
            .bind(secret_hash)
            .fetch_all::<Share>()
            .await?
            .into_iter()
            .next())
    }

    /// Stores a new share.
    pub async fn save_share(&self, share: &Share) -> Result<()> {
        self.write_share(share, 0).await
    }

    /// Revokes share `id`.
    pub async fn revoke_share(&self, share: &Share) -> Result<()> {
        self.write_share(share, 1).await
    }

    async fn write_share(&self, s: &Share, deleted: u8) -> Result<()> {
        let row = ShareRow {
            id: s.id.clone(),
            version: u64::try_from(chrono::Utc::now().timestamp_micros()).unwrap_or(0),
            deleted,
            site: s.site.clone(),
            secret_hash: s.secret_hash.clone(),
            password_hash: s.password_hash.clone(),
            created_by: s.created_by.clone(),
            created_at: s.created_at,
        };
        self.insert_one("shares", &row).await
    }
}
