//! What a session keeps between calls: the feed's releases, and the devices table (100,000 rows
//! are read once, then served from memory until the fleet changes).

use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};

use updraft_feed::sofa::SofaFeed;
use updraft_feed::{FeedRelease, LookupResponse};

use crate::AppError;
use crate::catalog::CatalogRelease;
use crate::table::DeviceTable;

pub(crate) struct Cache {
    catalog: RwLock<Arc<Vec<CatalogRelease>>>,
    /// The feed's releases as the release policies read them.
    feed_releases: RwLock<Arc<Vec<FeedRelease>>>,
    /// SOFA's feeds: what the releases fix.
    sofa: RwLock<Arc<Vec<SofaFeed>>>,
    table: Mutex<Option<Arc<DeviceTable>>>,
    /// One build of the table at a time: callers that arrive during a build take its result.
    building: tokio::sync::Mutex<()>,
}

impl Cache {
    pub(crate) fn new(feed: &LookupResponse, sofa: Vec<SofaFeed>) -> Self {
        let grouped = updraft_feed::releases::releases(feed);
        Self {
            catalog: RwLock::new(Arc::new(crate::catalog::releases(&grouped, &sofa))),
            feed_releases: RwLock::new(Arc::new(grouped)),
            sofa: RwLock::new(Arc::new(sofa)),
            table: Mutex::new(None),
            building: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn catalog(&self) -> Arc<Vec<CatalogRelease>> {
        match self.catalog.read() {
            Ok(catalog) => catalog.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub(crate) fn sofa(&self) -> Arc<Vec<SofaFeed>> {
        match self.sofa.read() {
            Ok(sofa) => sofa.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Takes newer SOFA feeds: what each release fixes is read again.
    pub(crate) fn replace_sofa(&self, sofa: Vec<SofaFeed>) {
        let releases = self.feed_releases();
        let catalog: Vec<CatalogRelease> = self
            .catalog()
            .iter()
            .cloned()
            .zip(releases.iter())
            .map(|(mut known, release)| {
                known.vulnerabilities = updraft_feed::sofa::vulnerabilities_of(&sofa, release);
                known
            })
            .collect();
        if let Ok(mut slot) = self.sofa.write() {
            *slot = Arc::new(sofa);
        }
        if let Ok(mut slot) = self.catalog.write() {
            *slot = Arc::new(catalog);
        }
    }

    pub(crate) fn feed_releases(&self) -> Arc<Vec<FeedRelease>> {
        match self.feed_releases.read() {
            Ok(releases) => releases.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Takes a newer feed: its releases as grouped, and as the catalog offers them.
    pub(crate) fn replace_catalog(&self, grouped: Vec<FeedRelease>, releases: Vec<CatalogRelease>) {
        if let Ok(mut catalog) = self.catalog.write() {
            *catalog = Arc::new(releases);
        }
        if let Ok(mut slot) = self.feed_releases.write() {
            *slot = Arc::new(grouped);
        }
    }

    /// The release of that platform, version and letter, if the feed still lists it.
    pub(crate) fn release_of(
        &self,
        platform: updraft_feed::Platform,
        version: &str,
        extra: Option<&str>,
    ) -> Option<CatalogRelease> {
        self.catalog()
            .iter()
            .find(|r| {
                r.release.platform == platform
                    && r.release.product_version == version
                    && r.release.product_version_extra.as_deref() == extra
            })
            .cloned()
    }

    pub(crate) fn release(&self, key: &str) -> Result<CatalogRelease, AppError> {
        self.catalog()
            .iter()
            .find(|r| r.key == key)
            .cloned()
            .ok_or_else(|| AppError::NotFound(format!("no release {key:?} in the feed")))
    }

    /// Drops the devices table: the fleet changed.
    pub(crate) fn invalidate(&self) {
        if let Ok(mut table) = self.table.lock() {
            *table = None;
        }
    }

    fn cached_table(&self) -> Option<Arc<DeviceTable>> {
        self.table.lock().ok()?.as_ref().cloned()
    }

    /// The devices table, from `build` when none is kept.
    pub(crate) async fn table(
        &self,
        build: impl Future<Output = Result<DeviceTable, AppError>>,
    ) -> Result<Arc<DeviceTable>, AppError> {
        if let Some(table) = self.cached_table() {
            return Ok(table);
        }
        let _building = self.building.lock().await;
        if let Some(table) = self.cached_table() {
            return Ok(table);
        }
        let table = Arc::new(build.await?);
        if let Ok(mut slot) = self.table.lock() {
            *slot = Some(table.clone());
        }
        Ok(table)
    }
}
