//! Presigned URLs kept across remounts: a per-user state file (mode 0600,
//! directory 0700) so that mounting again within a URL's lifetime costs no
//! POST. One file per API base and account, so two accounts never share a
//! URL. The file holds secrets (signed URLs): nothing else may read it.

use std::collections::BTreeMap;
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fnv::FnvHasher;
use serde::{Deserialize, Serialize};

use crate::private_file;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Entry {
    url: String,
    /// Unix seconds until which the URL may be handed out.
    valid_until: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File<E = Entry> {
    api_base: String,
    account: String,
    /// By object (`documents/<id>`).
    urls: BTreeMap<String, E>,
}

/// The longest a presigned URL can be valid (S3's limit is 7 days): a
/// longer time is impossible, and never stored or believed.
pub const MAX_URL_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// The file is written at most this often: with thousands of URLs, a
/// write per POST would rewrite megabytes per open. What is not written
/// yet is written by `save` (at unmount) or when the store is dropped.
const SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

pub struct UrlStore {
    path: PathBuf,
    file: Mutex<Kept>,
}

struct Kept {
    file: File,
    /// Changed since the last write.
    dirty: bool,
    written_at: Option<std::time::Instant>,
}

/// A URL loaded from the store, with the time it has left.
pub struct Stored {
    pub object: String,
    pub url: String,
    pub remaining: Duration,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// FNV-1a: a stable, short name for (API base, account), for files and
/// shared-cache keys.
pub fn key(api_base: &str, account: &str) -> String {
    let mut h = FnvHasher::default();
    h.write(api_base.as_bytes());
    h.write(&[0]);
    h.write(account.as_bytes());
    format!("{:016x}", h.finish())
}

/// `urls` in ocxfs's state directory (`$XDG_STATE_HOME/ocxfs/urls` on
/// Linux; see `platform::state_dir`).
pub fn default_dir() -> Option<PathBuf> {
    Some(crate::platform::state_dir()?.join("urls"))
}

impl UrlStore {
    /// Open (or start) the store for this API base and account in `dir`.
    /// An unreadable or corrupt file, or entry, is dropped with a log line:
    /// it only costs POSTs.
    pub fn open(dir: &Path, api_base: &str, account: &str) -> std::io::Result<UrlStore> {
        private_file::create_dir(dir)?;
        let path = dir.join(format!("{}.json", key(api_base, account)));
        let mut file = match std::fs::read(&path) {
            Ok(bytes) => read_entries(&bytes, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => File::default(),
            Err(e) => {
                tracing::warn!("ignoring the stored URLs in {}: {e}", path.display());
                File::default()
            }
        };
        if file.api_base != api_base || file.account != account {
            file = File::default();
        }
        file.api_base = api_base.to_owned();
        file.account = account.to_owned();
        Ok(UrlStore {
            path,
            file: Mutex::new(Kept {
                file,
                dirty: false,
                written_at: None,
            }),
        })
    }

    /// URLs that are still valid.
    pub fn load(&self) -> Vec<Stored> {
        let now = now_unix();
        let kept = self.file.lock().expect("url store poisoned");
        kept.file
            .urls
            .iter()
            .filter(|(_, e)| e.valid_until > now)
            .map(|(object, e)| Stored {
                object: object.clone(),
                url: e.url.clone(),
                remaining: Duration::from_secs(e.valid_until - now),
            })
            .collect()
    }

    /// Remember a URL for `remaining` (at most `MAX_URL_LIFETIME`).
    pub fn put(&self, object: &str, url: &str, remaining: Duration) {
        let mut kept = self.file.lock().expect("url store poisoned");
        let now = now_unix();
        kept.file.urls.retain(|_, e| e.valid_until > now);
        kept.file.urls.insert(
            object.to_owned(),
            Entry {
                url: url.to_owned(),
                valid_until: now.saturating_add(remaining.min(MAX_URL_LIFETIME).as_secs()),
            },
        );
        self.changed(&mut kept);
    }

    /// Forget a URL that storage refused.
    pub fn remove(&self, object: &str) {
        let mut kept = self.file.lock().expect("url store poisoned");
        if kept.file.urls.remove(object).is_some() {
            self.changed(&mut kept);
        }
    }

    /// Write what has not been written yet.
    pub fn save(&self) {
        let mut kept = self.file.lock().expect("url store poisoned");
        if kept.dirty {
            self.write(&mut kept);
        }
    }

    fn changed(&self, kept: &mut Kept) {
        kept.dirty = true;
        if kept.written_at.is_none_or(|t| t.elapsed() >= SAVE_EVERY) {
            self.write(kept);
        }
    }

    fn write(&self, kept: &mut Kept) {
        let written = serde_json::to_vec(&kept.file)
            .map_err(std::io::Error::other)
            .and_then(|json| private_file::write_atomic(&self.path, &[&json]));
        if let Err(e) = written {
            // Losing the store costs POSTs later, never a read now.
            tracing::warn!("cannot save presigned URLs to {}: {e}", self.path.display());
        }
        kept.dirty = false;
        kept.written_at = Some(std::time::Instant::now());
    }
}

impl Drop for UrlStore {
    fn drop(&mut self) {
        self.save();
    }
}

/// The entries of a state file that are still valid and possible; each
/// bad one (not JSON of an entry, an impossible expiry) is dropped with a
/// log line, and a file that is not JSON at all with one.
fn read_entries(bytes: &[u8], path: &Path) -> File {
    let raw = match serde_json::from_slice::<File<serde_json::Value>>(bytes) {
        Ok(raw) => raw,
        Err(e) => {
            tracing::warn!(
                "ignoring the corrupt URL state file {}: {e}",
                path.display()
            );
            return File::default();
        }
    };
    let now = now_unix();
    let latest = now.saturating_add(MAX_URL_LIFETIME.as_secs());
    let urls = raw
        .urls
        .into_iter()
        .filter_map(
            |(object, value)| match serde_json::from_value::<Entry>(value) {
                Ok(e) if e.valid_until > latest => {
                    tracing::warn!(%object, "dropping a stored URL with an impossible expiry");
                    None
                }
                Ok(e) => (e.valid_until > now).then_some((object, e)),
                Err(e) => {
                    tracing::warn!(%object, "dropping a malformed stored URL: {e}");
                    None
                }
            },
        )
        .collect();
    File {
        api_base: raw.api_base,
        account: raw.account,
        urls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn file_names_stay_what_earlier_versions_wrote() {
        // FNV-1a 64 of "API base NUL account", as the specification computes it.
        assert_eq!(
            key("https://app.onecodex.com", "/api/v1/users/abc"),
            "cf41e6da7fbf45cc"
        );
    }

    #[test]
    fn urls_survive_reopening_per_account_and_expire() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state/urls");
        let store = UrlStore::open(&dir, "http://api", "/api/v1/users/a").unwrap();
        store.put("documents/x", "http://s/x?sig=1", Duration::from_secs(600));
        store.put(
            "documents/old",
            "http://s/old?sig=1",
            Duration::from_secs(0),
        );
        let again = UrlStore::open(&dir, "http://api", "/api/v1/users/a").unwrap();
        let loaded = again.load();
        assert_eq!(loaded.len(), 1);
        assert_eq!(
            (loaded[0].object.as_str(), loaded[0].url.as_str()),
            ("documents/x", "http://s/x?sig=1")
        );
        assert!(loaded[0].remaining > Duration::from_secs(590));
        let other = UrlStore::open(&dir, "http://api", "/api/v1/users/b").unwrap();
        assert!(other.load().is_empty(), "another account sees nothing");
        again.remove("documents/x");
        assert!(
            UrlStore::open(&dir, "http://api", "/api/v1/users/a")
                .unwrap()
                .load()
                .is_empty()
        );
        for entry in std::fs::read_dir(&dir).unwrap() {
            let mode = entry.unwrap().metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }

    #[test]
    fn a_corrupt_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(format!("{}.json", key("b", "a"))),
            "{garbage",
        )
        .unwrap();
        let store = UrlStore::open(dir.path(), "b", "a").unwrap();
        assert!(store.load().is_empty());
        store.put("documents/y", "u", Duration::from_secs(60));
        assert_eq!(
            UrlStore::open(dir.path(), "b", "a").unwrap().load().len(),
            1
        );
    }

    #[test]
    fn bad_entries_are_dropped_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let now = now_unix();
        let file = serde_json::json!({
            "api_base": "b",
            "account": "a",
            "urls": {
                "documents/good": {"url": "http://s/g", "valid_until": now + 600},
                "documents/forever": {"url": "http://s/f", "valid_until": u64::MAX},
                "documents/later": {"url": "http://s/l", "valid_until": now + 8 * 24 * 3600},
                "documents/negative": {"url": "http://s/n", "valid_until": -5},
                "documents/float": {"url": "http://s/n", "valid_until": 1e300},
                "documents/text": {"url": "http://s/t", "valid_until": "soon"},
                "documents/nourl": {"valid_until": now + 600},
                "documents/junk": [1, 2, 3],
            }
        });
        let path = dir.path().join(format!("{}.json", key("b", "a")));
        std::fs::write(&path, file.to_string()).unwrap();
        let store = UrlStore::open(dir.path(), "b", "a").unwrap();
        let loaded = store.load();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].object, "documents/good");
        // Writing the file again keeps only what was good.
        store.put("documents/new", "http://s/new", Duration::from_secs(60));
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let mut kept: Vec<_> = written["urls"].as_object().unwrap().keys().collect();
        kept.sort();
        assert_eq!(kept, ["documents/good", "documents/new"]);
    }

    #[test]
    fn an_impossible_lifetime_is_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = UrlStore::open(dir.path(), "b", "a").unwrap();
        store.put("documents/x", "http://s/x", Duration::MAX);
        let loaded = UrlStore::open(dir.path(), "b", "a").unwrap().load();
        assert_eq!(loaded.len(), 1, "kept, clamped");
        assert!(loaded[0].remaining <= MAX_URL_LIFETIME);
    }
}
