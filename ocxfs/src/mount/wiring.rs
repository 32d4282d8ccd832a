//! Building the filesystem from its parts, with no FUSE type involved, so
//! that tests build it the way a mount does.

use std::sync::Arc;
use std::time::Duration;

use crate::api::ApiClient;
use crate::api::Listing;
use crate::api::credentials::Credentials;
use crate::api::model::Account;
use crate::catalog::Catalog;
use crate::disk_cache::DiskCache;
use crate::error::Error;
use crate::fs::{FsConfig, OcxFs};
use crate::http_client::HttpTrust;
use crate::metrics::Metrics;
use crate::post_budget::PostBudget;
use crate::post_guard::PostGuard;
use crate::presign::PresignCache;
use crate::reader::Reader;
use crate::retry::RetryPolicy;
use crate::shared_cache::SharedCache;
use crate::storage::StorageClient;
use crate::url_store::UrlStore;

/// A failed POST answers for its object this long without a new POST.
const NEGATIVE_TTL: Duration = Duration::from_secs(10);

/// Everything the filesystem is made of.
pub struct FsParts {
    pub api: Arc<ApiClient>,
    /// The first listing, fetched before mounting so that a failure stops
    /// the mount before it happens.
    pub listing: Listing,
    pub storage: StorageClient,
    /// Where presigned URLs are kept across remounts, if anywhere.
    pub url_store: Option<Arc<UrlStore>>,
    /// Where downloaded blocks are kept across remounts, if anywhere.
    pub disk_cache: Option<Arc<DiskCache>>,
    /// Memory for cached and in-flight data.
    pub memory_budget: u64,
    /// `--max-posts`, if set.
    pub post_budget: Option<PostBudget>,
    /// `--shared-cache`, if set.
    pub shared_cache: Option<SharedCache>,
    pub config: FsConfig,
}

/// The filesystem, built.
pub struct Wired {
    pub fs: Arc<OcxFs>,
    pub documents: usize,
    pub samples: usize,
    /// Listing entries left out of the tree.
    pub skipped: usize,
}

/// Connect to the API: a client, the account it answers for and its first
/// listing. While the listing is slow, `waiting` gets a line saying how far
/// it is every few seconds. Errors are one line saying what went wrong and
/// what to do.
pub async fn connect(
    api_base: &str,
    credentials: Credentials,
    trust: &HttpTrust,
    mut waiting: impl FnMut(&str),
) -> Result<(Arc<ApiClient>, Account, Listing), String> {
    const FIRST_NOTE: Duration = Duration::from_secs(3);
    const NOTE_EVERY: Duration = Duration::from_secs(10);
    let api = Arc::new(ApiClient::new(api_base, credentials, trust).map_err(|e| e.to_string())?);
    let account = api
        .account()
        .await
        .map_err(|e| describe_startup_error(&e, api_base))?;
    let listing = {
        let listing = api.listing();
        tokio::pin!(listing);
        let mut notes =
            tokio::time::interval_at(tokio::time::Instant::now() + FIRST_NOTE, NOTE_EVERY);
        loop {
            tokio::select! {
                listing = &mut listing => break listing,
                _ = notes.tick() => waiting(&format!(
                    "listing the account at {api_base}: {} entries so far…",
                    api.progress().entries()
                )),
            }
        }
    };
    let listing = listing.map_err(|e| describe_startup_error(&e, api_base))?;
    Ok((api, account, listing))
}

/// Assemble the filesystem: presigned URLs over the API, the reader over
/// storage and the caches, the catalog from the listing.
pub fn build_fs(parts: FsParts) -> Wired {
    let metrics = Arc::new(Metrics::default());
    let mut guard = PostGuard::new(NEGATIVE_TTL);
    if let Some(budget) = parts.post_budget {
        guard = guard.with_budget(budget);
    }
    if let Some(shared) = parts.shared_cache {
        guard = guard.with_shared_cache(shared);
    }
    guard.set_terms(&parts.listing);
    let mut presign = PresignCache::new(parts.api.clone(), NEGATIVE_TTL, metrics.clone())
        .with_guard(Arc::new(guard));
    if let Some(store) = parts.url_store {
        presign = presign.with_store(store);
    }
    let reader = Reader::new(
        parts.storage,
        Arc::new(presign),
        parts.memory_budget,
        RetryPolicy::default(),
        metrics,
        parts.disk_cache,
    );
    let mut catalog = Catalog::new();
    let skipped = catalog.rebuild(&parts.listing);
    let (documents, samples) = catalog.counts();
    let fs = OcxFs::new(parts.api, Arc::new(reader), catalog, parts.config);
    Wired {
        fs: Arc::new(fs),
        documents,
        samples,
        skipped,
    }
}

/// Default budget: an eighth of RAM, between 256 MiB and 1 GiB.
pub fn default_memory_budget() -> u64 {
    (physical_memory() / 8).clamp(256 << 20, 1 << 30)
}

/// Bytes of RAM in this machine (0 if unknown).
fn physical_memory() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    (pages.max(0) as u64).saturating_mul(page.max(0) as u64)
}

/// The user and group this process runs as, owners of every file.
pub fn current_owner() -> (u32, u32) {
    // SAFETY: getuid/getgid cannot fail.
    unsafe { (libc::getuid(), libc::getgid()) }
}

/// One line that says what went wrong before mounting, and what to do.
fn describe_startup_error(error: &Error, base: &str) -> String {
    let e = error.chain();
    match error {
        Error::Unauthorized { .. } | Error::Forbidden(_) => {
            format!("the API key was rejected by {base} ({e})")
        }
        // These name the host, the cause and the remedy themselves.
        Error::Tls(_) | Error::Proxy(_) => e.to_string(),
        Error::Network(_) | Error::Connect(_) | Error::Timeout(_) => {
            format!("cannot reach {base}: {e}")
        }
        _ => format!("{base}: {e}"),
    }
}
