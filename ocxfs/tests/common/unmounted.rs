//! The filesystem without a mount: `OcxFs` wired by `mount::build_fs`
//! over an emulator started in the test's own process.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ocxfs::api::credentials::{Credentials, Secret};
use ocxfs::catalog::ROOT_INO;
use ocxfs::error::Error;
use ocxfs::fs::{Attr, FsConfig, Kind, OcxFs};
use ocxfs::http_client::HttpTrust;
use ocxfs::interrupt::{Interrupts, Ticket};
use ocxfs::mount::{FsParts, build_fs, connect, current_owner};
use ocxfs::storage::StorageClient;
use ocxfs_emulator::{DEMO_API_KEY, Emulator, EmulatorArgs};

/// One directory entry as `readdir` hands it over.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub name: String,
    pub ino: u64,
    pub kind: Kind,
    pub attr: Option<Attr>,
}

/// An emulator serving the files of a directory as documents, and the
/// filesystem over it.
pub struct UnmountedFs {
    pub emu: Emulator,
    pub fs: Arc<OcxFs>,
    interrupts: Arc<Interrupts>,
    next_request: AtomicU64,
}

impl UnmountedFs {
    /// Serve every file under `docs` and build the filesystem on it, as a
    /// mount would (64 MiB of memory, no disk cache, no URL store).
    pub async fn start(docs: &Path) -> UnmountedFs {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut args = EmulatorArgs::demo();
        args.docs = Some(docs.to_owned());
        let emu = Emulator::start(args).await.expect("start the emulator");
        let credentials = Credentials::ApiKey(Secret::new(DEMO_API_KEY));
        let (api, _account, listing) =
            connect(emu.base_url(), credentials, &HttpTrust::default(), |_| {})
                .await
                .expect("connect to the emulator");
        let (uid, gid) = current_owner();
        let wired = build_fs(FsParts {
            api,
            listing,
            storage: StorageClient::new(Duration::from_secs(10), &HttpTrust::default())
                .expect("storage client"),
            url_store: None,
            disk_cache: None,
            memory_budget: 64 << 20,
            post_budget: None,
            shared_cache: None,
            config: FsConfig {
                uid,
                gid,
                umask: 0,
                listing_ttl: Duration::from_secs(60),
                read_timeout: Duration::from_secs(30),
            },
        });
        UnmountedFs {
            emu,
            fs: wired.fs,
            interrupts: Arc::default(),
            next_request: AtomicU64::new(1),
        }
    }

    /// A request ticket, as the FUSE adapter makes one per open or read.
    pub fn ticket(&self) -> Ticket {
        let unique = self.next_request.fetch_add(1, Ordering::Relaxed);
        self.interrupts.begin(unique, std::process::id())
    }

    /// The attributes at a `/`-separated path from the root.
    pub fn lookup_path(&self, path: &str) -> Result<Attr, Error> {
        let mut attr = self.fs.getattr(ROOT_INO)?;
        for name in path.split('/').filter(|n| !n.is_empty()) {
            attr = self.fs.lookup(attr.ino, name)?;
        }
        Ok(attr)
    }

    /// A whole directory, in `max` entries per call (as a small kernel
    /// buffer would take them).
    pub fn readdir_all(&self, ino: u64, plus: bool, max: usize) -> Result<Vec<Entry>, Error> {
        let mut all = Vec::new();
        let mut offset = 0;
        loop {
            let mut batch = Vec::new();
            self.fs.readdir(ino, offset, plus, |entry, attr, next| {
                if batch.len() == max {
                    return true;
                }
                batch.push(Entry {
                    name: entry.name.to_owned(),
                    ino: entry.ino,
                    kind: entry.kind,
                    attr,
                });
                offset = next;
                false
            })?;
            if batch.is_empty() {
                return Ok(all);
            }
            all.extend(batch);
        }
    }

    /// One extended attribute of a file, if it has it.
    pub fn xattr(&self, ino: u64, name: &str) -> Option<String> {
        let attrs = self.fs.xattrs(ino).expect("xattrs");
        attrs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Read an open file from `offset` to its end, `chunk` bytes per read.
    pub async fn read_to_end(&self, fh: u64, mut offset: u64, chunk: u32) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let data = self
                .fs
                .read(fh, offset, chunk, &self.ticket())
                .await
                .expect("read");
            if data.is_empty() {
                return out;
            }
            for part in &data.0 {
                out.extend_from_slice(part);
            }
            offset += data.len() as u64;
        }
    }

    /// POSTs the emulator has answered so far.
    pub fn posts(&self) -> u64 {
        self.emu.stats().posts_total
    }

    /// Stop the emulator.
    pub async fn stop(self) {
        self.emu.shutdown().await;
    }
}
