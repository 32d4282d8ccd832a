//! `ocxfs mount`: check everything that can fail before mounting, mount,
//! report readiness to the parent that started the daemon, and unmount
//! cleanly on SIGINT/SIGTERM.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use fuser::{Config, MountOption, SessionACL};

use crate::api::{ApiClient, DEFAULT_API_BASE, credentials};
use crate::catalog::Catalog;
use crate::demo::Demo;
use crate::disk_cache::DiskCache;
use crate::error::Error;
use crate::fs::{FsConfig, OcxFs};
use crate::fuse::FuseAdapter;
use crate::metrics::Metrics;
use crate::presign::PresignCache;
use crate::reader::{Reader, RetryPolicy};
use crate::storage::StorageClient;
use crate::url_store::{self, UrlStore};

/// Environment variable that carries `--api-key` to the daemon, so that the
/// key never appears in the daemon's command line (visible in `ps`).
pub const API_KEY_ENV: &str = "OCXFS_API_KEY";

#[derive(clap::Args, Debug, Clone)]
pub struct MountArgs {
    /// Directory to mount on
    pub mountpoint: PathBuf,
    /// One Codex API base URL
    #[arg(long, env = "ONE_CODEX_API_BASE", default_value = DEFAULT_API_BASE)]
    pub api_base: String,
    /// API key (else ONE_CODEX_BEARER_TOKEN, ONE_CODEX_API_KEY, ~/.onecodex)
    #[arg(long, env = API_KEY_ENV, hide_env_values = true)]
    pub api_key: Option<String>,
    /// File holding the API key (bare, or JSON like ~/.onecodex): for fstab
    /// and services, where the command line and environment are visible
    #[arg(long, conflicts_with = "api_key")]
    pub api_key_file: Option<PathBuf>,
    /// Stay in the foreground (logs to stderr)
    #[arg(long, short = 'f')]
    pub foreground: bool,
    /// Let other users read the mount (needs user_allow_other in /etc/fuse.conf)
    #[arg(long)]
    pub allow_other: bool,
    /// Mount the built-in demo account (an embedded emulator), no key needed
    #[arg(long, conflicts_with_all = ["api_key", "api_key_file"])]
    pub demo: bool,
    /// Seconds before the listing is fetched again
    #[arg(long, default_value_t = 60)]
    pub listing_ttl: u64,
    /// Memory for cached and in-flight data, e.g. 512M or 2G
    #[arg(long, value_parser = parse_size)]
    pub max_memory: Option<u64>,
    /// Seconds without data from storage before a request is cut and retried
    #[arg(long, default_value_t = 30)]
    pub stall_timeout: u64,
    /// Seconds an open or a read may take, retries included, before it
    /// fails with ETIMEDOUT
    #[arg(long, default_value_t = 60)]
    pub read_timeout: u64,
    /// Log file when detached (default: $XDG_STATE_HOME/ocxfs/ocxfs.log)
    #[arg(long)]
    pub log_file: Option<PathBuf>,
    /// Do not keep presigned URLs across remounts (in a 0600 file under
    /// $XDG_STATE_HOME/ocxfs/urls)
    #[arg(long)]
    pub no_persist_urls: bool,
    /// Keep downloaded blocks on disk here, across remounts
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Largest size of the disk cache, e.g. 20G
    #[arg(long, value_parser = parse_size, default_value = "10G")]
    pub max_cache_size: u64,
    /// Internal: file descriptor on which the daemon reports readiness
    #[arg(long, hide = true)]
    pub ready_fd: Option<i32>,
}

impl MountArgs {
    /// The daemon's command line: these options with absolute paths (the
    /// daemon runs in `/`), in the foreground, reporting on `ready_fd`. The
    /// API key travels in the environment, not here.
    fn daemon_args(&self, ready_fd: i32) -> Result<Vec<std::ffi::OsString>, String> {
        let abs = |p: &Path| {
            std::path::absolute(p)
                .map_err(|e| format!("{}: {e}", p.display()))
                .map(PathBuf::into_os_string)
        };
        let mut a: Vec<std::ffi::OsString> = vec!["mount".into(), abs(&self.mountpoint)?];
        let mut opt = |name: &str, value: String| {
            a.push(format!("--{name}").into());
            a.push(value.into());
        };
        opt("ready-fd", ready_fd.to_string());
        opt("api-base", self.api_base.clone());
        opt("listing-ttl", self.listing_ttl.to_string());
        opt("stall-timeout", self.stall_timeout.to_string());
        opt("read-timeout", self.read_timeout.to_string());
        if let Some(m) = self.max_memory {
            opt("max-memory", m.to_string());
        }
        a.push("--foreground".into());
        for (flag, on) in [
            ("--allow-other", self.allow_other),
            ("--demo", self.demo),
            ("--no-persist-urls", self.no_persist_urls),
        ] {
            if on {
                a.push(flag.into());
            }
        }
        for (flag, path) in [
            ("--api-key-file", &self.api_key_file),
            ("--log-file", &self.log_file),
            ("--cache-dir", &self.cache_dir),
        ] {
            if let Some(p) = path {
                a.push(flag.into());
                a.push(abs(p)?);
            }
        }
        a.push("--max-cache-size".into());
        a.push(self.max_cache_size.to_string().into());
        Ok(a)
    }
}

/// Mount options that `mount(8)` and fstab pass along but that mean
/// nothing to ocxfs (or are always true of it, like `ro`).
const GENERIC_MOUNT_OPTIONS: &[&str] = &[
    "defaults",
    "rw",
    "ro",
    "auto",
    "noauto",
    "user",
    "users",
    "nouser",
    "nofail",
    "_netdev",
    "exec",
    "noexec",
    "suid",
    "nosuid",
    "dev",
    "nodev",
    "atime",
    "noatime",
    "relatime",
    "strictatime",
    "sync",
    "async",
];

/// `mount.fuse.ocxfs SOURCE MOUNTPOINT [-o opt[,opt=value]…]`, as `mount -t
/// fuse.ocxfs` and fstab run it, turned into `ocxfs mount` arguments: each
/// `-o name=value` is `--name value` (underscores for dashes), a bare
/// `-o flag` is `--flag`.
pub fn helper_args(args: &[String]) -> Result<Vec<String>, String> {
    let mut positional = Vec::new();
    let mut options = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-o" => options.extend(
                it.next()
                    .ok_or("-o needs options")?
                    .split(',')
                    .map(str::to_owned),
            ),
            o if o.starts_with("-o") => options.extend(o[2..].split(',').map(str::to_owned)),
            // mount(8) may pass these: no mtab writing, sloppy, verbose.
            "-n" | "-s" | "-v" => {}
            o if o.starts_with('-') => return Err(format!("unknown argument {o}")),
            p => positional.push(p.to_owned()),
        }
    }
    let [_source, mountpoint] = positional.as_slice() else {
        return Err("usage: mount.fuse.ocxfs SOURCE MOUNTPOINT [-o options]".into());
    };
    let mut out = vec!["ocxfs".to_owned(), "mount".to_owned(), mountpoint.clone()];
    for o in options.iter().filter(|o| !o.is_empty()) {
        let (name, value) = match o.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (o.as_str(), None),
        };
        if GENERIC_MOUNT_OPTIONS.contains(&name) || name.starts_with("x-") || name == "comment" {
            continue;
        }
        if name == "api_key" {
            return Err("api_key=… would be visible in fstab and ps; use api_key_file=PATH".into());
        }
        out.push(format!("--{}", name.replace('_', "-")));
        out.extend(value.map(str::to_owned));
    }
    Ok(out)
}

/// `512M`, `2G`, `1048576`: binary units.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().map_err(|_| format!("not a size: {s:?}"))?;
    let mult = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("unknown unit in {s:?} (use K, M, G)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Default budget: an eighth of RAM, between 256 MiB and 1 GiB.
fn default_memory_budget() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let ram = (pages.max(0) as u64).saturating_mul(page.max(0) as u64);
    (ram / 8).clamp(256 << 20, 1 << 30)
}

/// Parent side of the daemon: start `ocxfs mount --foreground` detached,
/// and return once it reports the mount ready, or with its reason.
pub fn spawn_daemon(args: &MountArgs) -> Result<(), String> {
    let log = match &args.log_file {
        Some(p) => p.clone(),
        None => default_log_path().map_err(|e| format!("cannot create a log directory: {e}"))?,
    };
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| format!("cannot open log file {}: {e}", log.display()))?;
    let mut fds = [0; 2];
    // SAFETY: fds is a valid two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: pipe2 returned two fresh descriptors that we now own.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let write_fd = fds[1];

    let mut cmd = Command::new(
        std::env::current_exe().map_err(|e| format!("cannot find ocxfs itself: {e}"))?,
    );
    cmd.args(args.daemon_args(write_fd)?);
    match &args.api_key {
        Some(key) => cmd.env(API_KEY_ENV, key),
        None => cmd.env_remove(API_KEY_ENV),
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log_file));
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            // A daemon must not keep the directory it was started in busy.
            libc::chdir(c"/".as_ptr());
            // Let the daemon inherit the write end of the readiness pipe.
            if libc::fcntl(write_fd, libc::F_SETFD, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the mount daemon: {e}"))?;
    drop(write_end);
    let mut answer = String::new();
    let _ = std::fs::File::from(read_end).read_to_string(&mut answer);
    // Notes for the user come first, then "ok" or "error: …".
    let mut lines = answer.lines().peekable();
    while let Some(note) = lines.peek().and_then(|l| l.strip_prefix("note: ")) {
        eprintln!("ocxfs: {note}");
        lines.next();
    }
    match lines.next() {
        Some("ok") => Ok(()),
        Some(reason) => {
            let _ = child.wait();
            Err(reason.trim_start_matches("error: ").to_owned())
        }
        None => {
            let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
            Err(format!(
                "the mount daemon stopped before the mount was ready ({status}); see {}",
                log.display()
            ))
        }
    }
}

fn default_log_path() -> std::io::Result<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join("ocxfs");
    std::fs::create_dir_all(&dir)?;
    Ok(dir.join("ocxfs.log"))
}

/// Tells the parent how the mount went (when there is a parent), or the
/// user directly in the foreground.
struct Readiness(Option<std::fs::File>);

impl Readiness {
    fn from_fd(fd: Option<i32>) -> Readiness {
        // SAFETY: the parent passed us this descriptor for this purpose.
        Readiness(fd.map(|fd| unsafe { std::fs::File::from_raw_fd(fd) }))
    }
    fn send(&mut self, line: &str) {
        if let Some(mut f) = self.0.take() {
            let _ = writeln!(f, "{line}");
        }
    }
    /// Something the user should read even when the daemon detaches.
    fn note(&mut self, text: &str) {
        match &mut self.0 {
            Some(f) => {
                let _ = writeln!(f, "note: {text}");
            }
            None => eprintln!("ocxfs: {text}"),
        }
    }
}

/// Check the mount point: it must exist and be a directory, and not be a
/// live mount. A dead FUSE mount left by a killed ocxfs is cleared.
fn check_mountpoint(path: &Path, ready: &mut Readiness) -> Result<PathBuf, String> {
    let dead = match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => false,
        Ok(_) => return Err(format!("mount point {} is not a directory", path.display())),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("mount point {} does not exist", path.display()));
        }
        Err(e) => return Err(format!("mount point {}: {e}", path.display())),
    };
    // The kernel may answer `stat` of a dead mount's root from its cache:
    // only listing it tells a dead mount from a live one.
    let dead = dead || (is_mounted(&absolute(path)) && !answers(path));
    if dead {
        tracing::warn!(
            "{} is a dead FUSE mount (its process died); clearing it",
            path.display()
        );
        lazy_unmount(path);
        if std::fs::metadata(path).is_err() || is_mounted(&absolute(path)) {
            return Err(format!(
                "mount point {} is a dead mount that could not be cleared",
                path.display()
            ));
        }
        ready.note(&format!(
            "cleared a stale mount at {} (its ocxfs process had died)",
            path.display()
        ));
    }
    let path = path
        .canonicalize()
        .map_err(|e| format!("mount point {}: {e}", path.display()))?;
    if is_mounted(&path) {
        return Err(format!("{} is already a mount point", path.display()));
    }
    Ok(path)
}

/// `path` made absolute without touching it (canonicalize would stat it).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// Whether a mounted directory can be listed: a dead FUSE mount answers
/// ENOTCONN. A mount that does not answer within 2 s counts as alive (it
/// may just be busy), so it is never cleared by mistake.
fn answers(path: &Path) -> bool {
    let (tx, rx) = std::sync::mpsc::channel();
    let probe = path.to_owned();
    std::thread::spawn(move || {
        let dead =
            matches!(std::fs::read_dir(&probe), Err(e) if e.raw_os_error() == Some(libc::ENOTCONN));
        let _ = tx.send(!dead);
    });
    rx.recv_timeout(Duration::from_secs(2)).unwrap_or(true)
}

fn is_mounted(path: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return false;
    };
    let target = path.to_string_lossy().replace(' ', "\\040");
    mounts
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(target.as_str()))
}

/// Detach a mount even while files are open on it.
pub fn lazy_unmount(path: &Path) {
    let ok = Command::new("fusermount3")
        .args(["-u", "-z", "-q", "--"])
        .arg(path)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) {
            // SAFETY: c is a valid NUL-terminated path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// Ask the kernel for 1 MiB read-ahead on this mount (its FUSE default is
/// 128 KiB, which caps sequential reads at 128 KiB requests). Needs root;
/// without it the default stays.
fn raise_kernel_readahead(path: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let dev = meta.dev();
    let bdi = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    );
    match std::fs::write(&bdi, "1024") {
        Ok(()) => tracing::debug!("kernel read-ahead set to 1 MiB"),
        Err(e) => tracing::debug!("kernel read-ahead left at its default ({bdi}: {e})"),
    }
}

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
    let mountpoint = check_mountpoint(&args.mountpoint, ready)?;
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
        None => {
            let (c, source) = match &args.api_key_file {
                Some(path) => credentials::read_credentials_file(path).map(|key| {
                    (
                        credentials::Credentials::ApiKey(key),
                        credentials::Source::File(path.clone()),
                    )
                }),
                None => credentials::from_environment(args.api_key.as_deref()),
            }
            .map_err(|e| e.to_string())?;
            tracing::debug!(%source, "using credentials");
            (args.api_base.clone(), c)
        }
    };
    let api = Arc::new(ApiClient::new(&api_base, credentials).map_err(|e| e.to_string())?);
    let (account, listing) = rt.block_on(async {
        let account = api
            .account()
            .await
            .map_err(|e| describe_startup_error(&e, &api_base))?;
        let listing = api
            .listing()
            .await
            .map_err(|e| describe_startup_error(&e, &api_base))?;
        Ok::<_, String>((account, listing))
    })?;

    let metrics = Arc::new(Metrics::default());
    // A failed POST answers for its object this long without a new POST.
    let negative_ttl = Duration::from_secs(10);
    let mut presign = PresignCache::new(api.clone(), negative_ttl, metrics.clone());
    // The demo's emulator signs with a new key each run: nothing to keep.
    if !args.no_persist_urls && !args.demo {
        match url_store::default_dir().map(|dir| UrlStore::open(&dir, &api_base, &account.uri)) {
            Some(Ok(store)) => presign = presign.with_store(Arc::new(store)),
            Some(Err(e)) => tracing::warn!("presigned URLs will not be kept across remounts: {e}"),
            None => tracing::warn!(
                "no HOME or XDG_STATE_HOME: presigned URLs will not be kept across remounts"
            ),
        }
    }
    let presign = Arc::new(presign);
    let storage =
        StorageClient::new(Duration::from_secs(args.stall_timeout)).map_err(|e| e.to_string())?;
    let budget = args.max_memory.unwrap_or_else(default_memory_budget);
    let mut reader = Reader::new(storage, presign, budget, RetryPolicy::default(), metrics);
    if let Some(dir) = &args.cache_dir {
        let disk = DiskCache::open(dir, args.max_cache_size)
            .map_err(|e| format!("cache directory {}: {e}", dir.display()))?;
        reader = reader.with_disk_cache(Arc::new(disk));
    }
    let reader = Arc::new(reader);
    let reader_for_exit = reader.clone();
    let mut catalog = Catalog::new();
    let skipped = catalog.rebuild(&listing);
    let (documents, samples) = catalog.counts();
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let config = FsConfig {
        uid,
        gid,
        listing_ttl: Duration::from_secs(args.listing_ttl.max(1)),
        read_timeout: Duration::from_secs(args.read_timeout.max(1)),
    };
    let fs = Arc::new(OcxFs::new(api, reader, catalog, config));

    let options = vec![
        MountOption::FSName("ocxfs".into()),
        // A kernel option, so that `/proc/mounts` says `fuse.ocxfs` (and
        // `findmnt -t fuse.ocxfs` finds it) also when root mounts directly.
        MountOption::CUSTOM("subtype=ocxfs".into()),
        MountOption::RO,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::DefaultPermissions,
    ];
    let mut fuse_config = Config::default();
    fuse_config.mount_options = options;
    // Visible to the mounting user only unless asked otherwise.
    fuse_config.acl = if args.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    fuse_config.n_threads = Some(4);
    fuse_config.clone_fd = true;
    let adapter = FuseAdapter::new(fs, rt.handle().clone());
    // Signals are caught from before the mount exists, so a stop request
    // that follows readiness at once still unmounts cleanly.
    let (mut term, mut int) = {
        use tokio::signal::unix::{SignalKind, signal};
        let _rt = rt.enter();
        let term = signal(SignalKind::terminate()).map_err(|e| format!("signal handler: {e}"))?;
        let int = signal(SignalKind::interrupt()).map_err(|e| format!("signal handler: {e}"))?;
        (term, int)
    };
    let mut session = fuser::Session::new(adapter, &mountpoint, &fuse_config)
        .map_err(|e| format!("cannot mount on {}: {e}", mountpoint.display()))?;
    let mut unmounter = session.unmount_callable();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let (ended_tx, ended_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("ocxfs-fuse".into())
        .spawn(move || {
            if let Err(e) = session.run() {
                tracing::error!("FUSE session ended with an error: {e}");
            }
            let _ = done_tx.send(());
            let _ = ended_tx.send(());
        })
        .map_err(|e| format!("cannot start the FUSE loop: {e}"))?;
    raise_kernel_readahead(&mountpoint);

    tracing::info!(documents, samples, skipped, mountpoint = %mountpoint.display(), "mounted");
    eprintln!(
        "ocxfs: {documents} documents and {samples} samples mounted at {}",
        mountpoint.display()
    );
    ready.send("ok");
    notify_systemd("READY=1");

    rt.block_on(async {
        tokio::select! {
            _ = int.recv() => tracing::info!("SIGINT: unmounting"),
            _ = term.recv() => tracing::info!("SIGTERM: unmounting"),
            _ = done_rx => tracing::info!("unmounted from outside"),
        }
    });
    notify_systemd("STOPPING=1");
    rt.block_on(reader_for_exit.flush_disk_writes(Duration::from_secs(10)));
    if let Err(e) = unmounter.unmount() {
        // Busy (files open): detach the mount now. Open files keep the FUSE
        // connection alive; it ends when this process exits.
        tracing::warn!("unmount: {e}; detaching lazily");
        lazy_unmount(&mountpoint);
    }
    if ended_rx.recv_timeout(Duration::from_secs(2)).is_err() {
        tracing::warn!("files are still open on the detached mount; they will fail from now on");
    }
    if let Some(emu) = demo {
        rt.block_on(emu.shutdown());
    }
    rt.shutdown_timeout(Duration::from_secs(2));
    Ok(())
}

/// Tell systemd (a `Type=notify` service) how the daemon is doing; a no-op
/// elsewhere.
fn notify_systemd(state: &str) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(&path),
    };
    let sent = UnixDatagram::unbound().and_then(|s| s.send_to_addr(state.as_bytes(), &addr?));
    if let Err(e) = sent {
        tracing::warn!("cannot notify systemd: {e}");
    }
}

/// One line that says what went wrong before mounting, and what to do.
fn describe_startup_error(e: &Error, base: &str) -> String {
    match e {
        Error::Unauthorized { .. } | Error::Forbidden(_) => {
            format!("the API key was rejected by {base} ({e})")
        }
        Error::Network(_) | Error::Connect(_) | Error::Timeout(_) => {
            format!("cannot reach {base}: {e}")
        }
        _ => format!("{base}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_helper_options_become_flags() {
        let args: Vec<String> = ["none", "/mnt/ocx", "-o", "api_base=http://h:1,api_key_file=/etc/k,allow_other,_netdev,rw,x-systemd.automount,listing_ttl=5"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            helper_args(&args).unwrap(),
            [
                "ocxfs",
                "mount",
                "/mnt/ocx",
                "--api-base",
                "http://h:1",
                "--api-key-file",
                "/etc/k",
                "--allow-other",
                "--listing-ttl",
                "5"
            ]
        );
        let secret: Vec<String> = ["none", "/m", "-o", "api_key=abc"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(helper_args(&secret).is_err());
        assert!(helper_args(&["/m".to_string()]).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("M").is_err());
    }
}
