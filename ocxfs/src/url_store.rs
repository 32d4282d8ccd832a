//! Presigned URLs kept across remounts: a per-user state file (mode 0600,
//! directory 0700) so that mounting again within a URL's lifetime costs no
//! POST. One file per API base and account, so two accounts never share a
//! URL. The file holds secrets (signed URLs): nothing else may read it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::private_file;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    url: String,
    /// Unix seconds until which the URL may be handed out.
    valid_until: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    api_base: String,
    account: String,
    /// By object (`documents/<id>`).
    urls: BTreeMap<String, Entry>,
}

pub struct UrlStore {
    path: PathBuf,
    file: Mutex<File>,
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

/// FNV-1a: a stable, short file name for (API base, account).
fn key(api_base: &str, account: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in api_base.bytes().chain([0]).chain(account.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// `$XDG_STATE_HOME/ocxfs/urls`, else `~/.local/state/ocxfs/urls`.
pub fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(base.join("ocxfs").join("urls"))
}

impl UrlStore {
    /// Open (or start) the store for this API base and account in `dir`.
    /// An unreadable or corrupt file is set aside: it only costs POSTs.
    pub fn open(dir: &Path, api_base: &str, account: &str) -> std::io::Result<UrlStore> {
        private_file::create_dir(dir)?;
        let path = dir.join(format!("{}.json", key(api_base, account)));
        let mut file = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<File>(&bytes).ok())
            .filter(|f| f.api_base == api_base && f.account == account)
            .unwrap_or_default();
        file.api_base = api_base.to_owned();
        file.account = account.to_owned();
        let now = now_unix();
        file.urls.retain(|_, e| e.valid_until > now);
        Ok(UrlStore {
            path,
            file: Mutex::new(file),
        })
    }

    /// URLs that are still valid.
    pub fn load(&self) -> Vec<Stored> {
        let now = now_unix();
        let file = self.file.lock().expect("url store poisoned");
        file.urls
            .iter()
            .filter(|(_, e)| e.valid_until > now)
            .map(|(object, e)| Stored {
                object: object.clone(),
                url: e.url.clone(),
                remaining: Duration::from_secs(e.valid_until - now),
            })
            .collect()
    }

    /// Remember a URL for `remaining`, and write the file.
    pub fn put(&self, object: &str, url: &str, remaining: Duration) {
        let mut file = self.file.lock().expect("url store poisoned");
        let now = now_unix();
        file.urls.retain(|_, e| e.valid_until > now);
        file.urls.insert(
            object.to_owned(),
            Entry {
                url: url.to_owned(),
                valid_until: now + remaining.as_secs(),
            },
        );
        if let Err(e) = self.write(&file) {
            // Losing the store costs POSTs later, never a read now.
            tracing::warn!("cannot save presigned URLs to {}: {e}", self.path.display());
        }
    }

    /// Forget a URL that storage refused.
    pub fn remove(&self, object: &str) {
        let mut file = self.file.lock().expect("url store poisoned");
        if file.urls.remove(object).is_some() {
            if let Err(e) = self.write(&file) {
                tracing::warn!("cannot save presigned URLs to {}: {e}", self.path.display());
            }
        }
    }

    fn write(&self, file: &File) -> std::io::Result<()> {
        let json = serde_json::to_vec(file).map_err(std::io::Error::other)?;
        private_file::write_atomic(&self.path, &[&json])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

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
}
