//! The sites every role serves: those declared in the configuration file (read-only) and
//! those managed live — created, edited and deleted in the admin pages or the admin API, kept
//! in ClickHouse and announced through Redis. Every process holds one [`Directory`]; a
//! refresher (the binary's `directory` module) replaces its managed sites when they change,
//! so a new site is served everywhere within seconds, without a restart.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::{SiteId, settings::SiteSettings};

/// Where a site is declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The configuration file: read-only from the admin pages and API.
    Configuration,
    /// Created in the admin pages or the admin API.
    Managed,
}

/// A site and where it is declared.
#[derive(Debug, Clone)]
pub struct Site {
    pub settings: SiteSettings,
    pub source: Source,
}

impl Site {
    pub fn id(&self) -> &SiteId {
        &self.settings.id
    }

    /// The name shown in the pages: the one given, else the id.
    pub fn display_name(&self) -> &str {
        match self.settings.name.as_str() {
            "" => self.settings.id.as_str(),
            name => name,
        }
    }
}

/// The sites at one moment: the configuration's in their order, then the managed ones by id.
#[derive(Debug, Default)]
pub struct Sites {
    list: Vec<Arc<Site>>,
    index: HashMap<SiteId, usize>,
}

impl Sites {
    /// The configuration's sites and `managed` (a managed site with the id of a configured
    /// one is left out: the configuration wins).
    pub fn new(config: &[SiteSettings], mut managed: Vec<SiteSettings>) -> Self {
        managed.sort_by(|a, b| a.id.cmp(&b.id));
        let mut sites = Self::default();
        let all = config
            .iter()
            .cloned()
            .map(|settings| (settings, Source::Configuration))
            .chain(managed.into_iter().map(|s| (s, Source::Managed)));
        for (settings, source) in all {
            if sites.index.contains_key(&settings.id) {
                continue;
            }
            sites.index.insert(settings.id.clone(), sites.list.len());
            sites.list.push(Arc::new(Site { settings, source }));
        }
        sites
    }

    pub fn get(&self, id: &SiteId) -> Option<&Arc<Site>> {
        self.index.get(id).map(|&i| &self.list[i])
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Site>> {
        self.list.iter()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// A process's view of the sites, cheap to clone and to read (a lock held only to copy an
/// `Arc`).
#[derive(Debug, Clone)]
pub struct Directory {
    config: Arc<Vec<SiteSettings>>,
    sites: Arc<RwLock<Arc<Sites>>>,
}

impl Directory {
    /// The configuration's sites only, until [`set_managed`](Self::set_managed).
    pub fn new(config: &[SiteSettings]) -> Self {
        Self {
            config: Arc::new(config.to_vec()),
            sites: Arc::new(RwLock::new(Arc::new(Sites::new(config, Vec::new())))),
        }
    }

    /// Every site now.
    pub fn sites(&self) -> Arc<Sites> {
        self.sites.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The site `id`, if it is served.
    pub fn get(&self, id: &SiteId) -> Option<Arc<Site>> {
        self.sites().get(id).cloned()
    }

    /// The site named `id` (any text), if it is served.
    pub fn find(&self, id: &str) -> Option<Arc<Site>> {
        SiteId::parse(id).ok().and_then(|id| self.get(&id))
    }

    /// The time zone of site `id`'s days; a site no longer served counts in UTC.
    pub fn timezone_of(&self, id: &str) -> Tz {
        self.find(id).map_or(Tz::UTC, |s| s.settings.timezone)
    }

    /// Replaces the managed sites.
    pub fn set_managed(&self, managed: Vec<SiteSettings>) {
        let sites = Arc::new(Sites::new(&self.config, managed));
        *self.sites.write().unwrap_or_else(|e| e.into_inner()) = sites;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(id: &str, domain: &str) -> SiteSettings {
        SiteSettings {
            id: SiteId::parse(id).unwrap(),
            name: String::new(),
            domains: vec![domain.into()],
            timezone: Tz::UTC,
            public_counters: true,
        }
    }

    #[test]
    fn managed_sites_come_after_the_configuration_and_never_replace_it() {
        let directory = Directory::new(&[site("news", "news.vn"), site("blog", "blog.vn")]);
        assert_eq!(directory.sites().len(), 2);
        directory.set_managed(vec![
            site("ward-9", "p9.vn"),
            site("news", "other.vn"),
            site("ward-1", "p1.vn"),
        ]);
        let ids: Vec<String> = directory
            .sites()
            .iter()
            .map(|s| s.id().to_string())
            .collect();
        assert_eq!(ids, ["news", "blog", "ward-1", "ward-9"]);
        let news = directory.find("news").unwrap();
        assert_eq!(
            (news.source, news.settings.domains[0].as_str()),
            (Source::Configuration, "news.vn")
        );
        assert_eq!(directory.find("ward-1").unwrap().source, Source::Managed);
        // Deleted: gone at the next replacement.
        directory.set_managed(vec![site("ward-9", "p9.vn")]);
        assert!(directory.find("ward-1").is_none());
        assert_eq!(directory.timezone_of("ward-1"), Tz::UTC);
    }
}
