//! Presigned download URLs: the one place that decides when the charged
//! `download_uri` POST is sent.
//!
//! # The rule: the POST cannot loop, whatever the servers answer
//!
//! - **One POST per object per URL lifetime.** A URL is shared by every
//!   opener and reader of its object until it expires by our clock (with a
//!   margin). Concurrent openers queue behind one POST and share its answer.
//! - **Plus one refresh per storage "expired".** When storage refuses the
//!   URL as expired, one POST replaces it for every reader that reports it.
//! - **Then the object backs off.** When a POST fails, or when a URL
//!   obtained after a refusal or a failure is refused as expired again
//!   before half of its life (or 10 minutes), the object sends no POST for
//!   a while: 10 s, then 20 s, doubling up to 10 minutes. Every open and
//!   read of the object meanwhile gets the same error. A URL that lives
//!   that long ends the streak.
//! - **Every way a POST can end is an outcome.** An error status, a
//!   redirect, a malformed or absurd answer, a panic while handling the
//!   answer: each is one failed outcome, remembered as above. Only a usable
//!   URL is a success. Absurd lifetimes are clamped (at most 7 days, the
//!   longest a presigned URL can live), never trusted into arithmetic.
//!
//! [`decide`] applies this rule; nothing else sends the POST. (The API
//! client itself resends a POST only when it certainly was not processed:
//! no connection was made, or the API answered 429.)

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
use crate::post_guard::{self, PostGuard};
use crate::url_store::{MAX_URL_LIFETIME, UrlStore};

/// Who answers the POST: the API client, or a fake in tests.
pub trait UrlSource: Send + Sync {
    fn download_uri<'a>(&'a self, object: &'a ObjectId) -> BoxFuture<'a, Result<DownloadUri>>;
}

impl UrlSource for ApiClient {
    fn download_uri<'a>(&'a self, object: &'a ObjectId) -> BoxFuture<'a, Result<DownloadUri>> {
        Box::pin(ApiClient::download_uri(self, object))
    }
}

/// The longest lifetime believed, whatever the API announces.
const MAX_URL_HOURS: u64 = MAX_URL_LIFETIME.as_secs() / 3600;
/// A URL refused as expired after this long (or half its life) had an
/// ordinary life: at most one POST per object per this time when storage
/// refuses URLs early.
const PROVED_AFTER: Duration = Duration::from_secs(600);
/// The longest wait of the backoff after failed outcomes.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// A presigned URL. Its `Debug` hides the signature.
pub struct PresignedUrl {
    url: Url,
    /// Distinguishes URLs of one object, so that a reader reporting an
    /// expired URL cannot cause a second refresh once one has happened.
    serial: u64,
    fetched_at: Instant,
    /// How long it is handed out from `fetched_at`.
    lifetime: Duration,
}

impl PresignedUrl {
    pub fn url(&self) -> &Url {
        &self.url
    }

    fn is_fresh(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.fetched_at) < self.lifetime
    }

    /// Lived half of its life (10 minutes at most): a refusal now is an
    /// ordinary expiry, not a sign of a broken storage.
    fn proved(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.fetched_at) >= (self.lifetime / 2).min(PROVED_AFTER)
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

/// How long a URL announced to live `hours` is handed out: a tenth of its
/// life less, at most 10 minutes less, so a read that starts just before
/// expiry still has time to finish. Absurd lifetimes are clamped.
fn usable_lifetime(hours: u64) -> Duration {
    // 0 hours means "less than an hour"; assume a short but useful life.
    let life = match hours.min(MAX_URL_HOURS) {
        0 => Duration::from_secs(15 * 60),
        hours => Duration::from_secs(hours * 3600),
    };
    life - (life / 10).min(Duration::from_secs(600))
}

/// `text` as a URL storage can be asked with: http(s), with a host.
fn download_url(text: &str) -> Option<Url> {
    Url::parse(text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

/// Everything known about one object's URL.
#[derive(Default)]
struct Slot {
    url: Option<Arc<PresignedUrl>>,
    /// The free refresh after a refusal has been used in this streak.
    refreshed: bool,
    /// Backoffs in this streak (each waits twice as long as the last).
    backoffs: u32,
    /// The failure every caller gets until the given time.
    backoff: Option<(Error, Instant)>,
}

impl Slot {
    /// A failed outcome: no POST for this object for a while.
    fn back_off(&mut self, error: Error, first: Duration, now: Instant) -> Error {
        let wait = first
            .checked_mul(1 << self.backoffs.min(16))
            .map_or(MAX_BACKOFF, |w| w.min(MAX_BACKOFF));
        self.backoffs = self.backoffs.saturating_add(1);
        self.url = None;
        self.backoff = Some((error.clone(), now + wait));
        error
    }
}

/// What to do for a caller that wants a URL.
enum Decision {
    Use(Arc<PresignedUrl>),
    Refuse(Error),
    Post,
}

/// The rule of the module comment, for a caller that wants a URL for the
/// object of `slot` (`refused`: storage just called that URL expired).
fn decide(
    slot: &mut Slot,
    refused: Option<&PresignedUrl>,
    first_backoff: Duration,
    now: Instant,
) -> Decision {
    if slot.url.as_ref().is_some_and(|u| u.proved(now)) {
        // The last URL worked long enough: the streak is over.
        slot.refreshed = false;
        slot.backoffs = 0;
    }
    let current = slot.url.clone().filter(|u| u.is_fresh(now));
    match (current, refused) {
        (Some(url), None) => return Decision::Use(url),
        // Another reader reported the refused URL first and it was replaced.
        (Some(url), Some(old)) if url.serial != old.serial => return Decision::Use(url),
        _ => {}
    }
    if let Some((error, until)) = &slot.backoff {
        if now < *until {
            return Decision::Refuse(error.clone());
        }
    }
    match refused {
        Some(old) if slot.url.as_ref().is_some_and(|u| u.serial == old.serial) => {
            if old.proved(now) {
                return Decision::Post;
            }
            if slot.refreshed || slot.backoffs > 0 {
                tracing::error!(
                    "storage keeps refusing fresh presigned URLs as expired; backing off"
                );
                return Decision::Refuse(slot.back_off(Error::UrlExpired, first_backoff, now));
            }
            slot.refreshed = true;
            Decision::Post
        }
        _ => Decision::Post,
    }
}

/// A URL checked and ready for the slot.
struct Answer {
    url: Url,
    hours: u64,
    lifetime: Duration,
}

pub struct PresignCache {
    source: Arc<dyn UrlSource>,
    slots: Mutex<HashMap<ObjectId, Arc<tokio::sync::Mutex<Slot>>>>,
    /// The first wait after a failed outcome; it doubles up to `MAX_BACKOFF`.
    first_backoff: Duration,
    serial: AtomicU64,
    metrics: Arc<Metrics>,
    /// Where URLs are kept across remounts, when enabled.
    store: Option<Arc<UrlStore>>,
    /// Terms, budget and shared cache: asked before every POST.
    guard: Arc<PostGuard>,
}

impl PresignCache {
    pub fn new(source: Arc<dyn UrlSource>, first_backoff: Duration, metrics: Arc<Metrics>) -> Self {
        PresignCache {
            source,
            slots: Mutex::new(HashMap::new()),
            first_backoff,
            serial: AtomicU64::new(1),
            metrics,
            store: None,
            guard: Arc::new(PostGuard::new(first_backoff)),
        }
    }

    /// Ask `guard` before every POST.
    pub fn with_guard(mut self, guard: Arc<PostGuard>) -> Self {
        self.guard = guard;
        self
    }

    pub fn guard(&self) -> &PostGuard {
        &self.guard
    }

    /// Keep URLs in `store`, starting with the still-valid ones it holds.
    pub fn with_store(mut self, store: Arc<UrlStore>) -> Self {
        let now = Instant::now();
        let mut slots = self.slots.lock().expect("presign slots poisoned");
        for stored in store.load() {
            let (Some(object), Some(url)) =
                (ObjectId::parse(&stored.object), download_url(&stored.url))
            else {
                tracing::warn!(object = %stored.object, "dropping an unusable stored URL");
                continue;
            };
            let url = PresignedUrl {
                url,
                serial: self.serial.fetch_add(1, Ordering::Relaxed),
                fetched_at: now,
                lifetime: stored.remaining,
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

    /// Write the kept URLs not written yet (before an unmount).
    pub fn save_store(&self) {
        if let Some(store) = &self.store {
            store.save();
        }
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

    /// A valid URL for `object`, POSTing only as the rule allows.
    pub async fn get(self: &Arc<Self>, object: &ObjectId) -> Result<Arc<PresignedUrl>> {
        self.url(object, None).await
    }

    /// Storage said `stale` has expired: a new URL with one POST shared by
    /// every reader that reports the same URL, as the rule allows.
    pub async fn refresh(
        self: &Arc<Self>,
        object: &ObjectId,
        stale: &PresignedUrl,
    ) -> Result<Arc<PresignedUrl>> {
        self.url(object, Some(stale)).await
    }

    async fn url(
        self: &Arc<Self>,
        object: &ObjectId,
        refused: Option<&PresignedUrl>,
    ) -> Result<Arc<PresignedUrl>> {
        let mut slot = self.slot(object).lock_owned().await;
        let decision = decide(&mut slot, refused, self.first_backoff, Instant::now());
        if let (Some(store), Some(_), Decision::Refuse(_) | Decision::Post) =
            (&self.store, refused, &decision)
        {
            // Storage refused the stored URL: a remount must not reuse it.
            store.remove(&object.to_string());
        }
        match decision {
            Decision::Use(url) => {
                Metrics::add(&self.metrics.url_reuses, 1);
                Ok(url)
            }
            Decision::Refuse(error) => Err(error),
            Decision::Post => {
                let stale = refused.map(|r| r.url.clone());
                self.post_to_the_end(object, slot, stale).await
            }
        }
    }

    /// The POST runs in a task of its own, holding the slot: a caller that
    /// stops waiting (an interrupted open, a timeout) must not cancel a
    /// request the API may already have charged, and its outcome is kept
    /// for the next caller. The answer is handled in a further task, so
    /// that even a panic there is an outcome recorded in the slot. The
    /// guard may answer instead (another node's URL) or refuse first.
    async fn post_to_the_end(
        self: &Arc<Self>,
        object: &ObjectId,
        mut slot: OwnedMutexGuard<Slot>,
        stale: Option<Url>,
    ) -> Result<Arc<PresignedUrl>> {
        let (this, object) = (self.clone(), object.clone());
        tokio::spawn(async move {
            let permit = match this.guard.before_post(&object, stale.as_ref()).await? {
                post_guard::Decision::Shared { url, remaining } => {
                    return Ok(this.adopt(&object, &mut slot, url, remaining));
                }
                post_guard::Decision::Post(permit) => permit,
            };
            this.metrics.count_post(&object.to_string());
            let started = Instant::now();
            let (post, id) = (this.clone(), object.clone());
            let answer = tokio::spawn(async move { post.post(&id).await })
                .await
                .unwrap_or_else(|_| {
                    // Its message is not logged: it might quote the URL.
                    Err(Error::InvalidResponse(
                        "the download_uri answer could not be handled".into(),
                    ))
                });
            let outcome = match &answer {
                Ok(a) => Ok((&a.url, a.lifetime.saturating_sub(started.elapsed()))),
                Err(e) => Err(e),
            };
            this.guard.after_post(&object, permit, outcome).await;
            this.record(&object, &mut slot, answer, started)
        })
        .await
        // Only when the runtime shuts down: nothing is left to remember it.
        .map_err(|_| Error::Cancelled)?
    }

    /// One POST and the checks of its answer. Keeps a good URL in the store.
    async fn post(&self, object: &ObjectId) -> Result<Answer> {
        let started = Instant::now();
        let answer = self.source.download_uri(object).await?;
        let url = download_url(&answer.download_uri)
            .ok_or_else(|| Error::InvalidResponse("download_uri is not an http(s) URL".into()))?;
        let hours = answer.expires_in_hours;
        let lifetime = usable_lifetime(hours);
        if hours > MAX_URL_HOURS {
            tracing::warn!(%object, hours, "the API announced an absurd URL lifetime; assuming 7 days at most");
        }
        if let Some(store) = &self.store {
            store.put(
                &object.to_string(),
                url.as_str(),
                lifetime.saturating_sub(started.elapsed()),
            );
        }
        Ok(Answer {
            url,
            hours,
            lifetime,
        })
    }

    /// Another node's URL, usable `remaining` longer, into the slot: no POST.
    fn adopt(
        &self,
        object: &ObjectId,
        slot: &mut Slot,
        url: Url,
        remaining: Duration,
    ) -> Arc<PresignedUrl> {
        if let Some(store) = &self.store {
            store.put(&object.to_string(), url.as_str(), remaining);
        }
        let url = Arc::new(PresignedUrl {
            url,
            serial: self.serial.fetch_add(1, Ordering::Relaxed),
            fetched_at: Instant::now(),
            lifetime: remaining,
        });
        tracing::debug!(%object, "presigned URL taken from the shared cache");
        slot.url = Some(url.clone());
        slot.backoff = None;
        url
    }

    /// Put an outcome in the slot: the URL, or a backoff.
    fn record(
        &self,
        object: &ObjectId,
        slot: &mut Slot,
        answer: Result<Answer>,
        started: Instant,
    ) -> Result<Arc<PresignedUrl>> {
        match answer {
            Ok(answer) => {
                let url = Arc::new(PresignedUrl {
                    url: answer.url,
                    serial: self.serial.fetch_add(1, Ordering::Relaxed),
                    fetched_at: started,
                    lifetime: answer.lifetime,
                });
                tracing::debug!(%object, hours = answer.hours, "presigned URL obtained");
                slot.url = Some(url.clone());
                slot.backoff = None;
                Ok(url)
            }
            Err(err) => {
                Metrics::add(&self.metrics.post_failures, 1);
                self.metrics.count_error(&err);
                tracing::error!(%object, error = %err.chain(), "download_uri POST failed; backing off");
                Err(slot.back_off(err, self.first_backoff, Instant::now()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// What the fake API answers to the POST.
    #[derive(Clone)]
    enum Reply {
        Url { hours: u64 },
        Text(&'static str),
        Fail(Error),
        Panic,
    }

    /// Counts POSTs; answers after a delay so that callers overlap.
    struct FakeSource {
        posts: AtomicUsize,
        reply: Mutex<Reply>,
    }

    impl FakeSource {
        fn new() -> Arc<FakeSource> {
            Arc::new(FakeSource {
                posts: AtomicUsize::new(0),
                reply: Mutex::new(Reply::Url { hours: 1 }),
            })
        }

        fn reply(&self, reply: Reply) {
            *self.reply.lock().unwrap() = reply;
        }

        fn posts(&self) -> usize {
            self.posts.load(Ordering::SeqCst)
        }
    }

    impl UrlSource for FakeSource {
        fn download_uri<'a>(&'a self, object: &'a ObjectId) -> BoxFuture<'a, Result<DownloadUri>> {
            Box::pin(async move {
                let n = self.posts.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                let reply = self.reply.lock().unwrap().clone();
                let (download_uri, expires_in_hours) = match reply {
                    Reply::Url { hours } => (format!("http://s/{}?sig={n}", object.id), hours),
                    Reply::Text(text) => (text.to_owned(), 1),
                    Reply::Fail(e) => return Err(e),
                    Reply::Panic => panic!("the answer broke its handling"),
                };
                Ok(DownloadUri {
                    download_uri,
                    expires_in_hours,
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

    const FIRST_BACKOFF: Duration = Duration::from_secs(10);

    fn cache(src: Arc<FakeSource>) -> Arc<PresignCache> {
        Arc::new(PresignCache::new(
            src,
            FIRST_BACKOFF,
            Arc::new(Metrics::default()),
        ))
    }

    #[tokio::test]
    async fn concurrent_gets_share_one_post() {
        let src = FakeSource::new();
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
        assert_eq!(src.posts(), 1);
        assert!(serials.iter().all(|s| *s == serials[0]));
        c.get(&object()).await.unwrap();
        assert_eq!(src.posts(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn one_refresh_per_expiry_however_many_readers_report_it() {
        let src = FakeSource::new();
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
        assert_eq!(src.posts(), 2);
    }

    /// Storage says "expired" to every URL: one refresh, then growing waits.
    #[tokio::test(start_paused = true)]
    async fn urls_refused_forever_back_off_with_growing_waits() {
        let src = FakeSource::new();
        let c = cache(src.clone());
        let first = c.get(&object()).await.unwrap();
        let mut url = c.refresh(&object(), &first).await.unwrap();
        assert_eq!(src.posts(), 2, "one refusal is answered with one refresh");
        let mut waited = Duration::ZERO;
        for wait in [10, 20, 40, 80, 160, 320, 600, 600] {
            let refused = c.refresh(&object(), &url).await;
            assert!(matches!(refused, Err(Error::UrlExpired)));
            let posts = src.posts();
            // Every open and read meanwhile shares the failure.
            tokio::time::advance(Duration::from_secs(wait - 1)).await;
            assert!(matches!(c.get(&object()).await, Err(Error::UrlExpired)));
            assert!(matches!(
                c.refresh(&object(), &url).await,
                Err(Error::UrlExpired)
            ));
            assert_eq!(src.posts(), posts, "no POST within a {wait} s wait");
            tokio::time::advance(Duration::from_secs(1)).await;
            waited += Duration::from_secs(wait);
            url = c.get(&object()).await.unwrap();
            assert_eq!(src.posts(), posts + 1, "one POST after a {wait} s wait");
        }
        assert_eq!(src.posts(), 10, "in {waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_url_that_lived_ten_minutes_ends_the_streak() {
        let src = FakeSource::new();
        let c = cache(src.clone());
        let first = c.get(&object()).await.unwrap();
        let second = c.refresh(&object(), &first).await.unwrap();
        // Used for 10 minutes, then refused: an ordinary expiry.
        tokio::time::advance(PROVED_AFTER).await;
        let third = c.refresh(&object(), &second).await.unwrap();
        assert_eq!(src.posts(), 3);
        // ... after which one early refusal is tolerated again.
        let fourth = c.refresh(&object(), &third).await.unwrap();
        assert_eq!(src.posts(), 4);
        assert!(c.refresh(&object(), &fourth).await.is_err());
        assert_eq!(src.posts(), 4);
    }

    /// Every failed outcome: an error status, a malformed answer, a panic.
    #[tokio::test(start_paused = true)]
    async fn every_failed_outcome_is_shared_and_backs_off() {
        for reply in [
            Reply::Fail(Error::PaymentRequired("premium only".into())),
            Reply::Fail(Error::InvalidResponse("redirected".into())),
            Reply::Text("not a url"),
            Reply::Text("file:///etc/passwd"),
            Reply::Panic,
        ] {
            let src = FakeSource::new();
            src.reply(reply);
            let c = cache(src.clone());
            let tasks: Vec<_> = (0..6)
                .map(|_| {
                    let c = c.clone();
                    tokio::spawn(async move { c.get(&object()).await })
                })
                .collect();
            let mut errnos = Vec::new();
            for t in tasks {
                errnos.push(t.await.unwrap().unwrap_err().errno());
            }
            assert!(errnos.iter().all(|e| *e == errnos[0]));
            tokio::time::advance(FIRST_BACKOFF - Duration::from_millis(100)).await;
            assert!(c.get(&object()).await.is_err());
            assert_eq!(src.posts(), 1, "one POST per failed outcome");
            tokio::time::advance(Duration::from_millis(100)).await;
            assert!(c.get(&object()).await.is_err());
            assert_eq!(src.posts(), 2, "one more after the wait");
            // The next wait is twice as long.
            tokio::time::advance(2 * FIRST_BACKOFF - Duration::from_millis(100)).await;
            assert!(c.get(&object()).await.is_err());
            assert_eq!(src.posts(), 2);
            src.reply(Reply::Url { hours: 1 });
            tokio::time::advance(Duration::from_millis(100)).await;
            assert!(c.get(&object()).await.is_ok());
            assert_eq!(src.posts(), 3);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn absurd_lifetimes_are_clamped() {
        for hours in [0, 1, 1 << 40, u64::MAX / 3600 + 1, u64::MAX] {
            let src = FakeSource::new();
            src.reply(Reply::Url { hours });
            let c = cache(src.clone());
            let url = c.get(&object()).await.unwrap();
            assert!(url.lifetime > Duration::ZERO && url.lifetime <= MAX_URL_LIFETIME);
            tokio::time::advance(MAX_URL_LIFETIME).await;
            c.get(&object()).await.unwrap();
            assert_eq!(
                src.posts(),
                2,
                "{hours} h: a new URL once the old one is past"
            );
        }
    }

    #[tokio::test]
    async fn a_caller_that_stops_waiting_does_not_waste_the_post() {
        let src = FakeSource::new();
        let c = cache(src.clone());
        // The POST takes 20 ms; this caller gives up after 5 (an interrupted open).
        let gave_up = tokio::time::timeout(Duration::from_millis(5), c.get(&object())).await;
        assert!(gave_up.is_err());
        let url = c.get(&object()).await.unwrap();
        assert!(
            url.url().as_str().ends_with("sig=0"),
            "the first POST's answer"
        );
        assert_eq!(src.posts(), 1);
    }

    #[tokio::test]
    async fn stored_urls_are_reused_after_a_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let store = || Arc::new(UrlStore::open(tmp.path(), "http://api", "acct").unwrap());
        let src = FakeSource::new();
        let with_store = || {
            Arc::new(
                PresignCache::new(src.clone(), FIRST_BACKOFF, Arc::new(Metrics::default()))
                    .with_store(store()),
            )
        };
        let first = with_store();
        let url = first.get(&object()).await.unwrap().url().clone();
        drop(first);
        let second = with_store();
        assert_eq!(second.get(&object()).await.unwrap().url(), &url);
        assert_eq!(src.posts(), 1, "no POST after the restart");
    }

    #[test]
    fn usable_lifetime_keeps_a_margin() {
        assert_eq!(usable_lifetime(1), Duration::from_secs(3240));
        assert_eq!(usable_lifetime(24), Duration::from_secs(24 * 3600 - 600));
        assert!(usable_lifetime(0) > Duration::ZERO);
    }

    proptest::proptest! {
        #[test]
        fn any_announced_lifetime_is_usable_and_bounded(hours in proptest::num::u64::ANY) {
            let life = usable_lifetime(hours);
            proptest::prop_assert!(life > Duration::ZERO && life <= MAX_URL_LIFETIME);
            let hours_asked = Duration::from_secs(hours.saturating_mul(3600));
            proptest::prop_assert!(hours == 0 || life <= hours_asked);
        }
    }
}
