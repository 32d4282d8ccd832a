//! The command-line arguments of `ocxfs mount`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::api::DEFAULT_API_BASE;
use crate::post_budget::{BudgetSpec, parse_spec};
use crate::size::parse_size;

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
    /// Let root read the mount besides its owner (needs user_allow_other in
    /// /etc/fuse.conf when not mounted by root)
    #[arg(long, conflicts_with = "allow_other")]
    pub allow_root: bool,
    /// Owner of every file and directory (default: the mounting user)
    #[arg(long)]
    pub uid: Option<u32>,
    /// Group of every file and directory (default: the mounting user's)
    #[arg(long)]
    pub gid: Option<u32>,
    /// Permission bits to clear, in octal: files are 0444 and directories
    /// 0555 less these (e.g. 027, 077)
    #[arg(long, value_parser = parse_umask)]
    pub umask: Option<u16>,
    /// Mount even on a directory that holds files (hidden while mounted)
    #[arg(long)]
    pub allow_non_empty: bool,
    /// Mount the built-in demo account (an embedded emulator), no key needed
    #[arg(long, conflicts_with_all = ["api_key", "api_key_file"])]
    pub demo: bool,
    /// Seconds before the listing is fetched again
    #[arg(long, default_value_t = 60)]
    pub listing_ttl: u64,
    /// Memory for cached and in-flight data, e.g. 512M, 1.5G or 2G
    #[arg(long, value_parser = parse_size)]
    pub max_memory: Option<u64>,
    /// Seconds without data from storage before a request is cut and retried
    #[arg(long, default_value_t = 30)]
    pub stall_timeout: u64,
    /// Seconds an open or a read may take, retries included, before it
    /// fails with ETIMEDOUT
    #[arg(long, default_value_t = 60)]
    pub read_timeout: u64,
    /// Log file when detached (default: ocxfs.log in $XDG_STATE_HOME/ocxfs
    /// on Linux and FreeBSD, ~/Library/Logs/ocxfs on macOS)
    #[arg(long)]
    pub log_file: Option<PathBuf>,
    /// Do not keep presigned URLs across remounts (in a 0600 file under
    /// $XDG_STATE_HOME/ocxfs/urls; ~/Library/Application Support/ocxfs/urls
    /// on macOS)
    #[arg(long)]
    pub no_persist_urls: bool,
    /// Keep downloaded blocks on disk here, across remounts
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// PEM file of CA certificates to trust besides the system's, for the
    /// API and storage (SSL_CERT_FILE or SSL_CERT_DIR replace the system's)
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Largest size of the disk cache, e.g. 20G
    #[arg(long, value_parser = parse_size, default_value = "10G")]
    pub max_cache_size: u64,
    /// At most N download_uri POSTs per period (fixed UTC windows), e.g.
    /// 2000/day or 100/h; counted across remounts, and across nodes with
    /// --shared-cache
    #[arg(long, value_name = "N/PERIOD", value_parser = parse_spec)]
    pub max_posts: Option<BudgetSpec>,
    /// Share presigned URLs with every node of the account through Redis:
    /// redis://[user@]host:port/db, or rediss:// for TLS (no password here)
    #[arg(long, value_name = "URL")]
    pub shared_cache: Option<String>,
    /// File holding the Redis password (else OCXFS_REDIS_PASSWORD)
    #[arg(long, value_name = "FILE", requires = "shared_cache")]
    pub shared_cache_password_file: Option<PathBuf>,
    /// Internal: file descriptor on which the daemon reports readiness
    #[arg(long, hide = true)]
    pub ready_fd: Option<i32>,
}

/// What `--api-key KEY` on a command line costs: every user of the machine
/// can read it (`ps`, `/proc`) while the process runs.
const KEY_ON_COMMAND_LINE: &str = "warning: --api-key on a command line is visible to other \
     users of this machine (ps); use --api-key-file FILE or the ONE_CODEX_API_KEY environment \
     variable instead";

/// When this process was started with `--api-key KEY`: warn, then run the
/// same command again in this process (exec) with the key moved into the
/// environment, so that it is not in this process's arguments while it
/// waits or serves. Returns only if there is nothing to move.
pub fn move_api_key_to_environment() -> Result<(), String> {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let Some((rest, key)) = without_api_key(&argv) else {
        return Ok(());
    };
    eprintln!("ocxfs: {KEY_ON_COMMAND_LINE}");
    let exe = std::env::current_exe().map_err(|e| format!("cannot find ocxfs itself: {e}"))?;
    let error = exec_with_env(&exe, &rest, API_KEY_ENV, &key);
    Err(format!(
        "cannot restart without the API key on the command line: {error}"
    ))
}

/// Replace this process with `exe` run with `argv` (argv[0] included)
/// and `name=value` added to the environment; returns only on failure.
fn exec_with_env(exe: &Path, argv: &[OsString], name: &str, value: &OsString) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(exe);
    if let Some((arg0, args)) = argv.split_first() {
        cmd.arg0(arg0).args(args);
    }
    cmd.env(name, value).exec()
}

/// `argv` less `--api-key KEY` (or `--api-key=KEY`), and the key; `None`
/// when no key is given on it. Arguments after `--` are left alone.
fn without_api_key(argv: &[OsString]) -> Option<(Vec<OsString>, OsString)> {
    let mut rest = Vec::with_capacity(argv.len());
    let mut key = None;
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            rest.push(a.clone());
            rest.extend(it.by_ref().cloned());
            break;
        }
        if a == "--api-key" {
            key = Some(it.next().cloned().unwrap_or_default());
        } else if let Some(k) = a.to_str().and_then(|a| a.strip_prefix("--api-key=")) {
            key = Some(k.into());
        } else {
            rest.push(a.clone());
        }
    }
    key.map(|k| (rest, k))
}

impl MountArgs {
    /// The daemon's command line: these options with absolute paths (the
    /// daemon runs in `/`), in the foreground, reporting on `ready_fd`, at
    /// the parent's `--log-level`. The API key travels in the environment,
    /// not here.
    pub(super) fn daemon_args(
        &self,
        ready_fd: i32,
        log_level: Option<&str>,
    ) -> Result<Vec<OsString>, String> {
        let abs = |p: &Path| {
            std::path::absolute(p)
                .map_err(|e| format!("{}: {e}", p.display()))
                .map(PathBuf::into_os_string)
        };
        let mut a: Vec<OsString> = vec!["mount".into(), abs(&self.mountpoint)?];
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
        if let Some(level) = log_level {
            opt("log-level", level.to_owned());
        }
        if let Some(b) = &self.max_posts {
            opt("max-posts", b.to_string());
        }
        if let Some(url) = &self.shared_cache {
            opt("shared-cache", url.clone());
        }
        for (name, value) in [("uid", self.uid), ("gid", self.gid)] {
            if let Some(v) = value {
                opt(name, v.to_string());
            }
        }
        if let Some(m) = self.umask {
            opt("umask", format!("{m:03o}"));
        }
        a.push("--foreground".into());
        for (flag, on) in [
            ("--allow-other", self.allow_other),
            ("--allow-root", self.allow_root),
            ("--allow-non-empty", self.allow_non_empty),
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
            ("--ca-file", &self.ca_file),
            (
                "--shared-cache-password-file",
                &self.shared_cache_password_file,
            ),
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

/// `022`, `0027`, `77`: octal permission bits, as umask(1) takes them.
fn parse_umask(s: &str) -> Result<u16, String> {
    u16::from_str_radix(s.trim(), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("not an octal umask (like 022 or 077): {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_api_key_is_taken_out_of_the_command_line() {
        let (rest, key) =
            without_api_key(&os(&["ocxfs", "mount", "/m", "--api-key", "K1", "-f"])).unwrap();
        assert_eq!(
            (rest, key),
            (os(&["ocxfs", "mount", "/m", "-f"]), "K1".into())
        );
        let (rest, key) = without_api_key(&os(&["ocxfs", "mount", "--api-key=K2", "/m"])).unwrap();
        assert_eq!((rest, key), (os(&["ocxfs", "mount", "/m"]), "K2".into()));
        // The file option is not the key, and neither is anything after `--`.
        assert_eq!(
            without_api_key(&os(&["ocxfs", "mount", "--api-key-file", "/k", "/m"])),
            None
        );
        assert_eq!(
            without_api_key(&os(&["ocxfs", "mount", "--", "--api-key"])),
            None
        );
    }

    #[test]
    fn umasks_are_octal() {
        assert_eq!(parse_umask("022"), Ok(0o22));
        assert_eq!(parse_umask("0077"), Ok(0o77));
        assert!(parse_umask("8").is_err());
        assert!(parse_umask("1000").is_err());
        assert!(parse_umask("").is_err());
    }
}
