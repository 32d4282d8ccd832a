//! Presigned download URLs: one `download_uri` POST per object for as long
//! as its URL is valid, shared by every opener and reader.
//!
//! Each object has an async mutex held across its POST, so concurrent
//! openers queue behind one request and then find its URL. Failures are
//! remembered briefly so that tools which retry `open` do not POST again
//! and again (each POST may incur retrieval charges).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;

use futures_util::future::BoxFuture;
use reqwest::Url;

use crate::api::model::DownloadUri;
use crate::api::{ApiClient, ObjectId};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::url_store::UrlStore;

/// Who answers the POST: the API client, or a fake in tests.
pub trait UrlSource: Send + Sync {
    fn download_uri<'a>(&'a self, object: &'a ObjectId) -> BoxFuture<'a, Result<DownloadUri>>;
}

impl UrlSource for ApiClient {
    fn download_uri<'a>(&'a self, object: &'a ObjectId) -> BoxFuture<'a, Result<DownloadUri>> {
        Box::pin(ApiClient::download_uri(self, object))
    }
}

/// A presigned URL. Its `Debug` hides the signature.
pub struct PresignedUrl {
    url: Url,
    /// Distinguishes URLs of one object, so that a reader reporting an
    /// expired URL cannot cause a second refresh once one has happened.
    serial: u64,
    fetched_at: Instant,
    valid_until: Instant,
}

impl PresignedUrl {
    pub fn url(&self) -> &Url {
        &self.url
    }
    fn is_fresh(&self, now: Instant) -> bool {
        now < self.valid_until
    }
}

impl std::fmt::Debug for PresignedUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresignedUrl")
            .field("host", &self.url.host_str())
            .field("serial", &self.serial)
            .finish()
    }
}

/// How long before the announced expiry a URL stops being handed out:
/// a tenth of its life, at most 10 minutes, so a read that starts just
/// before expiry still has time to finish.
fn usable_lifetime(hours: u64) -> Duration {
    // 0 hours means "less than an hour"; assume a short but useful life.
    let life = if hours == 0 {
        Duration::from_secs(15 * 60)
    } else {
        Duration::from_secs(hours * 3600)
    };
    life - (life / 10).min(Duration::from_secs(600))
}

/// A URL younger than this that storage calls expired is "young": storage
/// may have a skewed clock, and refreshing every time would cost a POST per
/// read. One young refresh per object is allowed per `YOUNG_REFRESH_EVERY`.
const YOUNG: Duration = Duration::from_secs(1);
const YOUNG_REFRESH_EVERY: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Slot {
    url: Option<Arc<PresignedUrl>>,
    failure: Option<(Error, Instant)>,
    last_young_refresh: Option<Instant>,
}

pub struct PresignCache {
    source: Arc<dyn UrlSource>,
    slots: Mutex<HashMap<ObjectId, Arc<tokio::sync::Mutex<Slot>>>>,
    /// How long a failed POST answers for its object without a new POST.
    negative_ttl: Duration,
    serial: AtomicU64,
    metrics: Arc<Metrics>,
    /// Where URLs are kept across remounts, when enabled.
    store: Option<Arc<UrlStore>>,
}

impl PresignCache {
    pub fn new(source: Arc<dyn UrlSource>, negative_ttl: Duration, metrics: Arc<Metrics>) -> Self {
        PresignCache {
            source,
            slots: Mutex::new(HashMap::new()),
            negative_ttl,
            serial: AtomicU64::new(1),
            metrics,
            store: None,
        }
    }

    /// Keep URLs in `store`, starting with the still-valid ones it holds.
    pub fn with_store(mut self, store: Arc<UrlStore>) -> Self {
        let now = Instant::now();
        let mut slots = self.slots.lock().expect("presign slots poisoned");
        for stored in store.load() {
            let (Some(object), Ok(url)) =
                (ObjectId::parse(&stored.object), Url::parse(&stored.url))
            else {
                continue;
            };
            let url = PresignedUrl {
                url,
                serial: self.serial.fetch_add(1, Ordering::Relaxed),
                // Not "young": storage refusing it is an ordinary expiry.
                fetched_at: now.checked_sub(YOUNG).unwrap_or(now),
                valid_until: now + stored.remaining,
            };
            let slot = Slot {
                url: Some(Arc::new(url)),
                ..Slot::default()
            };
            slots.insert(object, Arc::new(tokio::sync::Mutex::new(slot)));
        }
        drop(slots);
        self.store = Some(store);
        self
    }

    fn slot(&self, object: &ObjectId) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut slots = self.slots.lock().expect("presign slots poisoned");
        slots.entry(object.clone()).or_default().clone()
    }

    /// Whether a valid URL for `object` is cached (or being fetched): then
    /// opening it costs no new POST. Never waits, never POSTs.
    pub fn has_url(&self, object: &ObjectId) -> bool {
        let Some(slot) = self
            .slots
            .lock()
            .expect("presign slots poisoned")
            .get(object)
            .cloned()
        else {
            return false;
        };
        match slot.try_lock() {
            Ok(slot) => slot
                .url
                .as_ref()
                .is_some_and(|u| u.is_fresh(Instant::now())),
            Err(_) => true,
        }
    }

    /// A valid URL for `object`, POSTing only when none is cached.
    pub async fn get(self: &Arc<Self>, object: &ObjectId) -> Result<Arc<PresignedUrl>> {
        let slot = self.slot(object).lock_owned().await;
        if let Some(url) = slot.url.as_ref().filter(|u| u.is_fresh(Instant::now())) {
            Metrics::add(&self.metrics.url_reuses, 1);
            return Ok(url.clone());
        }
        self.post_to_the_end(object, slot).await
    }

    /// Storage said `stale` has expired: get a new URL with one POST shared
    /// by every reader that reports the same stale URL.
    pub async fn refresh(
        self: &Arc<Self>,
        object: &ObjectId,
        stale: &PresignedUrl,
    ) -> Result<Arc<PresignedUrl>> {
        let mut slot = self.slot(object).lock_owned().await;
        if let Some(url) = slot.url.as_ref().filter(|u| u.serial != stale.serial) {
            return Ok(url.clone());
        }
        if stale.fetched_at.elapsed() < YOUNG {
            if slot
                .last_young_refresh
                .is_some_and(|t| t.elapsed() < YOUNG_REFRESH_EVERY)
            {
                tracing::error!(%object, "storage keeps rejecting fresh presigned URLs as expired; not asking for another now");
                return Err(Error::UrlExpired);
            }
            slot.last_young_refresh = Some(Instant::now());
        }
        slot.url = None;
        if let Some(store) = &self.store {
            store.remove(&object.to_string());
        }
        self.post_to_the_end(object, slot).await
    }

    /// The POST runs in a task of its own, holding the slot: a caller that
    /// stops waiting (an interrupted open, a timeout) must not cancel a
    /// request the API may already have charged, and its answer is kept for
    /// the next caller.
    async fn post_to_the_end(
        self: &Arc<Self>,
        object: &ObjectId,
        mut slot: OwnedMutexGuard<Slot>,
    ) -> Result<Arc<PresignedUrl>> {
        let (this, object) = (self.clone(), object.clone());
        tokio::spawn(async move { this.post(&object, &mut slot).await })
            .await
            .map_err(|_| Error::Cancelled)?
    }

    async fn post(&self, object: &ObjectId, slot: &mut Slot) -> Result<Arc<PresignedUrl>> {
        if let Some((err, at)) = &slot.failure {
            if at.elapsed() < self.negative_ttl {
                return Err(err.clone());
            }
        }
        self.metrics.count_post(&object.to_string());
        let started = Instant::now();
        match self.source.download_uri(object).await {
            Ok(answer) => {
                let url = Url::parse(&answer.download_uri)
                    .map_err(|_| Error::InvalidResponse("download_uri is not a URL".into()))?;
                let lifetime = usable_lifetime(answer.expires_in_hours);
                if let Some(store) = &self.store {
                    store.put(
                        &object.to_string(),
                        url.as_str(),
                        lifetime.saturating_sub(started.elapsed()),
                    );
                }
                let url = Arc::new(PresignedUrl {
                    url,
                    serial: self.serial.fetch_add(1, Ordering::Relaxed),
                    fetched_at: started,
                    valid_until: started + lifetime,
                });
                tracing::debug!(%object, hours = answer.expires_in_hours, "presigned URL obtained");
                slot.url = Some(url.clone());
                slot.failure = None;
                Ok(url)
            }
            Err(err) => {
                Metrics::add(&self.metrics.post_failures, 1);
                self.metrics.count_error(&err);
                tracing::error!(%object, error = %err, "download_uri POST failed; not retrying");
                slot.failure = Some((err.clone(), Instant::now()));
                Err(err)
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts POSTs; answers after a delay so that callers overlap.
    pub(crate) struct FakeSource {
        pub posts: AtomicUsize,
        pub fail_with: Mutex<Option<Error>>,
        pub hours: u64,
        pub base: String,
    }

    impl FakeSource {
        pub(crate) fn new(base: &str) -> Arc<FakeSource> {
            Arc::new(FakeSource {
                posts: AtomicUsize::new(0),
                fail_with: Mutex::new(None),
                hours: 1,
                base: base.to_owned(),
            })
        }
    }

    impl UrlSource for FakeSource {
        fn download_uri<'a>(&'a self, object: &'a ObjectId) -> BoxFuture<'a, Result<DownloadUri>> {
            Box::pin(async move {
                let n = self.posts.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                if let Some(e) = self.fail_with.lock().unwrap().clone() {
                    return Err(e);
                }
                Ok(DownloadUri {
                    download_uri: format!("{}/{}?sig={n}", self.base, object.id),
                    expires_in_hours: self.hours,
                })
            })
        }
    }

    fn object() -> ObjectId {
        ObjectId {
            kind: crate::api::ObjectKind::Document,
            id: "0123456789abcdef".into(),
        }
    }

    fn cache(src: Arc<FakeSource>) -> Arc<PresignCache> {
        Arc::new(PresignCache::new(
            src,
            Duration::from_secs(5),
            Arc::new(Metrics::default()),
        ))
    }

    #[tokio::test]
    async fn concurrent_gets_share_one_post() {
        let src = FakeSource::new("http://s");
        let c = cache(src.clone());
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { c.get(&object()).await.unwrap().serial })
            })
            .collect();
        let mut serials = Vec::new();
        for t in tasks {
            serials.push(t.await.unwrap());
        }
        assert_eq!(src.posts.load(Ordering::SeqCst), 1);
        assert!(serials.iter().all(|s| *s == serials[0]));
        c.get(&object()).await.unwrap();
        assert_eq!(src.posts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn one_refresh_per_expiry_however_many_readers_report_it() {
        let src = FakeSource::new("http://s");
        let c = cache(src.clone());
        let stale = c.get(&object()).await.unwrap();
        tokio::time::advance(Duration::from_secs(2)).await;
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (c, stale) = (c.clone(), stale.clone());
                tokio::spawn(async move { c.refresh(&object(), &stale).await.unwrap().serial })
            })
            .collect();
        for t in tasks {
            assert_ne!(t.await.unwrap(), stale.serial);
        }
        assert_eq!(src.posts.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn fresh_urls_reported_expired_are_refreshed_once_per_period() {
        let src = FakeSource::new("http://s");
        let c = cache(src.clone());
        let first = c.get(&object()).await.unwrap();
        let second = c.refresh(&object(), &first).await.unwrap();
        assert_eq!(
            src.posts.load(Ordering::SeqCst),
            2,
            "one early expiry is tolerated"
        );
        assert!(matches!(
            c.refresh(&object(), &second).await,
            Err(Error::UrlExpired)
        ));
        assert_eq!(
            src.posts.load(Ordering::SeqCst),
            2,
            "a second one soon after is not"
        );
        tokio::time::advance(YOUNG_REFRESH_EVERY).await;
        assert!(c.refresh(&object(), &second).await.is_ok());
        assert_eq!(src.posts.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn failures_are_shared_and_not_retried_within_the_negative_ttl() {
        let src = FakeSource::new("http://s");
        *src.fail_with.lock().unwrap() = Some(Error::PaymentRequired("premium only".into()));
        let c = cache(src.clone());
        let tasks: Vec<_> = (0..6)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { c.get(&object()).await })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap_err().errno(), libc::EACCES);
        }
        assert!(c.get(&object()).await.is_err());
        assert_eq!(src.posts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_caller_that_stops_waiting_does_not_waste_the_post() {
        let src = FakeSource::new("http://s");
        let c = cache(src.clone());
        // The POST takes 20 ms; this caller gives up after 5 (an interrupted open).
        let gave_up = tokio::time::timeout(Duration::from_millis(5), c.get(&object())).await;
        assert!(gave_up.is_err());
        let url = c.get(&object()).await.unwrap();
        assert!(
            url.url().as_str().ends_with("sig=0"),
            "the first POST's answer"
        );
        assert_eq!(src.posts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn stored_urls_are_reused_after_a_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let store = || Arc::new(UrlStore::open(tmp.path(), "http://api", "acct").unwrap());
        let src = FakeSource::new("http://s");
        let with_store = || {
            Arc::new(
                PresignCache::new(
                    src.clone(),
                    Duration::from_secs(5),
                    Arc::new(Metrics::default()),
                )
                .with_store(store()),
            )
        };
        let first = with_store();
        let url = first.get(&object()).await.unwrap().url().clone();
        drop(first);
        let second = with_store();
        assert_eq!(second.get(&object()).await.unwrap().url(), &url);
        assert_eq!(
            src.posts.load(Ordering::SeqCst),
            1,
            "no POST after the restart"
        );
    }

    #[test]
    fn usable_lifetime_keeps_a_margin() {
        assert_eq!(usable_lifetime(1), Duration::from_secs(3240));
        assert_eq!(usable_lifetime(24), Duration::from_secs(24 * 3600 - 600));
        assert!(usable_lifetime(0) > Duration::ZERO);
    }
}
