//! The announcement of the managed sites: after a change is stored in ClickHouse (their
//! durable copy), the process that made it writes the new list here and bumps the version;
//! every process polls the version (one GET a second) and reads the list when it changed.

use crate::{Result, Store, keys};

impl Store {
    /// Announces `sites_json` (the managed sites) as the newest list; returns its version.
    pub async fn announce_sites(&self, sites_json: &str) -> Result<u64> {
        let mut conn = self.conn();
        let (version,): (u64,) = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(keys::DIRECTORY_SITES)
            .arg(sites_json)
            .ignore()
            .cmd("INCR")
            .arg(keys::DIRECTORY_VERSION)
            .query_async(&mut conn)
            .await?;
        Ok(version)
    }

    /// The announced version (`None` when nothing is announced, e.g. after Redis lost its
    /// data) and, when it is not `known`, the announced list.
    pub async fn announced_sites(
        &self,
        known: Option<u64>,
    ) -> Result<(Option<u64>, Option<String>)> {
        let mut conn = self.conn();
        let version: Option<u64> = redis::cmd("GET")
            .arg(keys::DIRECTORY_VERSION)
            .query_async(&mut conn)
            .await?;
        if version.is_none() || version == known {
            return Ok((version, None));
        }
        let sites: Option<String> = redis::cmd("GET")
            .arg(keys::DIRECTORY_SITES)
            .query_async(&mut conn)
            .await?;
        Ok((version, sites))
    }
}

/// Deletes every live key of site ARGV[2] in the partition with prefix ARGV[1]: its counters,
/// titles, baselines, presence, visits, unique-visitor sketches and views per minute.
/// KEYS[1] (the site's view counts) routes the call to the partition's node on a cluster;
/// every key deleted carries the same hash tag. Returns how many keys went.
static FORGET_SITE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local prefix, site = ARGV[1], ARGV[2]
local gone = 0
for _, kind in ipairs({'views', 'totals', 'here', 'active', 'titles', 'baseline',
                       'baseline_totals'}) do
  gone = gone + redis.call('UNLINK', prefix .. kind .. ':' .. site)
end
-- 'online': the per-page sorted sets of releases before the `readers` slots.
for _, kind in ipairs({'readers', 'online', 'visits', 'uv', 'vpm'}) do
  local pattern = prefix .. kind .. ':' .. site .. ':*'
  local cursor = '0'
  repeat
    local reply = redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', 1000)
    cursor = reply[1]
    for _, key in ipairs(reply[2]) do
      gone = gone + redis.call('UNLINK', key)
    end
  until cursor == '0'
end
return gone
",
    )
});

impl Store {
    /// Deletes the live state of `site` (in `partition`): what its history "drop" means in
    /// Redis. Returns how many keys were deleted.
    pub async fn forget_site(&self, site: &tally_core::SiteId, partition: u16) -> Result<u64> {
        let keys = crate::Keys::new(partition);
        let mut conn = self.conn();
        Ok(FORGET_SITE
            .key(keys.views(site.as_str()))
            .arg(keys.prefix())
            .arg(site.as_str())
            .invoke_async(&mut conn)
            .await?)
    }
}
