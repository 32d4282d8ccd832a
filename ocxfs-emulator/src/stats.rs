//! Request counters, exposed as `GET /_emulator/stats` or `Emulator::stats()`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Snapshot of the emulator's counters (the JSON of `GET /_emulator/stats`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// `POST .../download_uri` per document or sample id (any outcome).
    pub posts: BTreeMap<String, u64>,
    pub posts_total: u64,
    /// Storage GETs carrying a `Range` header (any outcome).
    pub range_gets: u64,
    /// Storage GETs without a `Range` header (any outcome).
    pub full_gets: u64,
    /// Storage body bytes handed to the connection.
    pub storage_bytes: u64,
    /// "Request has expired" answers, genuine or injected by the `expire` fault.
    pub expired_403: u64,
    /// Storage requests that carried `X-API-Key` or `Authorization` (a client leaking its key).
    pub storage_requests_with_credentials: u64,
    pub api_requests: ApiRequests,
    /// Injected faults per kind.
    pub faults_injected: BTreeMap<String, u64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiRequests {
    pub account: u64,
    pub list_documents: u64,
    pub get_document: u64,
    #[serde(default)]
    pub list_samples: u64,
    #[serde(default)]
    pub get_sample: u64,
    #[serde(default)]
    pub list_projects: u64,
    #[serde(default)]
    pub list_tags: u64,
}

/// Live counters. Hot counters are atomics; the maps sit behind a mutex.
#[derive(Default)]
pub(crate) struct Counters {
    maps: Mutex<Maps>,
    posts_total: AtomicU64,
    range_gets: AtomicU64,
    full_gets: AtomicU64,
    storage_bytes: AtomicU64,
    expired_403: AtomicU64,
    storage_with_credentials: AtomicU64,
    account: AtomicU64,
    list_documents: AtomicU64,
    get_document: AtomicU64,
    list_samples: AtomicU64,
    get_sample: AtomicU64,
    list_projects: AtomicU64,
    list_tags: AtomicU64,
}

#[derive(Default)]
struct Maps {
    posts: BTreeMap<String, u64>,
    faults: BTreeMap<String, u64>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum ApiRoute {
    Account,
    List,
    Get,
    ListSamples,
    GetSample,
    ListProjects,
    ListTags,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub fn post(&self, id: &str) {
        bump(&self.posts_total);
        *self.maps().posts.entry(id.to_owned()).or_default() += 1;
    }

    pub fn api(&self, route: ApiRoute) {
        bump(match route {
            ApiRoute::Account => &self.account,
            ApiRoute::List => &self.list_documents,
            ApiRoute::Get => &self.get_document,
            ApiRoute::ListSamples => &self.list_samples,
            ApiRoute::GetSample => &self.get_sample,
            ApiRoute::ListProjects => &self.list_projects,
            ApiRoute::ListTags => &self.list_tags,
        });
    }

    pub fn storage_get(&self, ranged: bool) {
        bump(if ranged {
            &self.range_gets
        } else {
            &self.full_gets
        });
    }

    pub fn storage_credentials(&self) {
        bump(&self.storage_with_credentials);
    }

    pub fn storage_bytes(&self, n: u64) {
        self.storage_bytes.fetch_add(n, Ordering::Relaxed);
    }

    pub fn expired(&self) {
        bump(&self.expired_403);
    }

    pub fn fault(&self, kind: &str) {
        *self.maps().faults.entry(kind.to_owned()).or_default() += 1;
    }

    fn maps(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.maps.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let maps = self.maps();
        Stats {
            posts: maps.posts.clone(),
            posts_total: get(&self.posts_total),
            range_gets: get(&self.range_gets),
            full_gets: get(&self.full_gets),
            storage_bytes: get(&self.storage_bytes),
            expired_403: get(&self.expired_403),
            storage_requests_with_credentials: get(&self.storage_with_credentials),
            api_requests: ApiRequests {
                account: get(&self.account),
                list_documents: get(&self.list_documents),
                get_document: get(&self.get_document),
                list_samples: get(&self.list_samples),
                get_sample: get(&self.get_sample),
                list_projects: get(&self.list_projects),
                list_tags: get(&self.list_tags),
            },
            faults_injected: maps.faults.clone(),
        }
    }

    pub fn reset(&self) {
        let mut maps = self.maps();
        maps.posts.clear();
        maps.faults.clear();
        for c in [
            &self.posts_total,
            &self.range_gets,
            &self.full_gets,
            &self.storage_bytes,
            &self.expired_403,
            &self.storage_with_credentials,
            &self.account,
            &self.list_documents,
            &self.get_document,
            &self.list_samples,
            &self.get_sample,
            &self.list_projects,
            &self.list_tags,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}
