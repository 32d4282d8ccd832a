//! `ocxfs mount` in the foreground: each step from the checks to a served
//! mount, in order.

mod args;
mod daemon;
mod guard;
mod helper;
mod mountpoint;
mod readiness;
mod session;
mod unmount;
mod wiring;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use args::{MountArgs, move_api_key_to_environment};
pub use daemon::spawn_daemon;
pub use helper::{expand_mount_options, helper_args};
pub use unmount::unmount;
pub use wiring::{FsParts, Wired, build_fs, connect, current_owner};

use crate::api::credentials::{self, Credentials};
use crate::demo::Demo;
use crate::disk_cache::DiskCache;
use crate::fs::FsConfig;
use crate::fuse::FuseAdapter;
use crate::http_client::HttpTrust;
use crate::platform::ServiceState;
use crate::storage::StorageClient;
use crate::url_store::{self, UrlStore};
use fuser::SessionACL;
pub use readiness::EarlyWarnings;
use readiness::{Readiness, notify_service};

/// The daemon (or `--foreground`): everything up to a ready mount, then
/// serve until a signal or an external unmount.
pub fn run_foreground(args: MountArgs) -> Result<(), String> {
    let mut ready = Readiness::from_fd(args.ready_fd);
    let result = mount_and_serve(&args, &mut ready);
    if let Err(reason) = &result {
        ready.send(&format!("error: {reason}"));
    }
    result
}

fn mount_and_serve(args: &MountArgs, ready: &mut Readiness) -> Result<(), String> {
    let mountpoint = mountpoint::check_mountpoint(&args.mountpoint, args.allow_non_empty, ready)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ocxfs-io")
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;

    // The demo account is an emulator inside this process.
    let demo = if args.demo {
        Some(rt.block_on(Demo::start())?)
    } else {
        None
    };
    let (api_base, credentials) = match &demo {
        Some(emu) => (emu.api_base().to_owned(), emu.credentials()),
        None => (args.api_base.clone(), credentials_of(args)?),
    };
    let trust = HttpTrust::new(args.ca_file.as_deref()).map_err(|e| e.to_string())?;
    let (api, account, listing) = rt.block_on(connect(&api_base, credentials, &trust, |line| {
        ready.note(line)
    }))?;

    // The demo's emulator signs with a new key each run: nothing to keep.
    let url_store = if args.no_persist_urls || args.demo {
        None
    } else {
        open_url_store(&api_base, &account.uri)
    };
    let storage = StorageClient::new(Duration::from_secs(args.stall_timeout), &trust)
        .map_err(|e| e.to_string())?;
    let disk_cache = match &args.cache_dir {
        Some(dir) => Some(Arc::new(
            DiskCache::open(dir, args.max_cache_size)
                .map_err(|e| format!("cache directory {}: {e}", dir.display()))?,
        )),
        None => None,
    };
    let post_budget = guard::budget(args, &api_base, &account.uri);
    let shared_cache = guard::shared_cache(args, &api_base, &account.uri)?;
    let (user, group) = current_owner();
    let wired = build_fs(FsParts {
        api,
        listing,
        storage,
        url_store,
        disk_cache,
        memory_budget: args
            .max_memory
            .unwrap_or_else(wiring::default_memory_budget),
        post_budget,
        shared_cache,
        config: FsConfig {
            uid: args.uid.unwrap_or(user),
            gid: args.gid.unwrap_or(group),
            umask: args.umask.unwrap_or(0),
            listing_ttl: Duration::from_secs(args.listing_ttl.max(1)),
            read_timeout: Duration::from_secs(args.read_timeout.max(1)),
        },
    });
    let reader = wired.fs.reader().clone();

    let adapter = FuseAdapter::new(wired.fs, rt.handle().clone());
    let signals = unmount::StopSignals::catch(&rt)?;
    let access = if args.allow_other {
        SessionACL::All
    } else if args.allow_root {
        SessionACL::RootAndOwner
    } else {
        SessionACL::Owner
    };
    let session = session::start(adapter, &mountpoint, access)?;

    let Wired {
        documents,
        samples,
        skipped,
        ..
    } = wired;
    tracing::info!(documents, samples, skipped, mountpoint = %mountpoint.display(), "mounted");
    // On the terminal also when detached: the parent prints notes.
    ready.note(&format!(
        "{documents} documents and {samples} samples mounted at {}",
        mountpoint.display()
    ));
    ready.send("ok");
    notify_service(ServiceState::Ready);

    unmount::serve_until_stopped(&rt, signals, session, &reader, &mountpoint);
    if let Some(emu) = demo {
        rt.block_on(emu.shutdown());
    }
    rt.shutdown_timeout(Duration::from_secs(2));
    Ok(())
}

/// The API credentials the arguments or the environment name.
fn credentials_of(args: &MountArgs) -> Result<Credentials, String> {
    let (c, source) = match &args.api_key_file {
        Some(path) => credentials::read_credentials_file(path).map(|key| {
            (
                Credentials::ApiKey(key),
                credentials::Source::File(path.clone()),
            )
        }),
        None => credentials::from_environment(args.api_key.as_deref()),
    }
    .map_err(|e| e.to_string())?;
    tracing::debug!(%source, "using credentials");
    Ok(c)
}

/// The store of presigned URLs for this account, or none (with a warning)
/// when it cannot be opened.
fn open_url_store(api_base: &str, account: &str) -> Option<Arc<UrlStore>> {
    let dir: Option<PathBuf> = url_store::default_dir();
    match dir.map(|dir| UrlStore::open(&dir, api_base, account)) {
        Some(Ok(store)) => Some(Arc::new(store)),
        Some(Err(e)) => {
            tracing::warn!("presigned URLs will not be kept across remounts: {e}");
            None
        }
        None => {
            tracing::warn!("no home directory: presigned URLs will not be kept across remounts");
            None
        }
    }
}
