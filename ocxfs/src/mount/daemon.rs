//! Detaching: the parent starts the daemon in the background, then waits
//! for its readiness report.

use std::io::{BufRead, BufReader};
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::args::{API_KEY_ENV, MountArgs};
use crate::platform;
use crate::private_file;

/// Parent side of the daemon: start `ocxfs mount --foreground` detached,
/// and return once it reports the mount ready, or with its reason.
pub fn spawn_daemon(args: &MountArgs, log_level: Option<&str>) -> Result<(), String> {
    let log = match &args.log_file {
        Some(p) => p.clone(),
        None => default_log_path().map_err(|e| format!("cannot create a log directory: {e}"))?,
    };
    let log_file = private_file::open_append(&log)
        .map_err(|e| format!("cannot open log file {}: {e}", log.display()))?;
    let (read_end, write_end) = platform::cloexec_pipe().map_err(|e| format!("pipe: {e}"))?;
    let write_fd = std::os::fd::AsRawFd::as_raw_fd(&write_end);

    let mut cmd = Command::new(
        std::env::current_exe().map_err(|e| format!("cannot find ocxfs itself: {e}"))?,
    );
    cmd.args(args.daemon_args(write_fd, log_level)?);
    match &args.api_key {
        Some(key) => cmd.env(API_KEY_ENV, key),
        None => cmd.env_remove(API_KEY_ENV),
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log_file));
    detach_on_exec(&mut cmd, write_fd);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the mount daemon: {e}"))?;
    drop(write_end);
    // Notes for the user come first, shown as they arrive (a slow listing
    // says how far it is), then "ok" or "error: …".
    let mut lines = BufReader::new(read_end)
        .lines()
        .map_while(std::io::Result::ok);
    let outcome = lines.find(|line| match line.strip_prefix("note: ") {
        Some(note) => {
            eprintln!("ocxfs: {note}");
            false
        }
        None => true,
    });
    match outcome.as_deref() {
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

/// Make the child a session leader in `/` that inherits `keep_fd` (the
/// readiness pipe's write end).
fn detach_on_exec(cmd: &mut Command, keep_fd: RawFd) {
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            // A daemon must not keep the directory it was started in busy.
            libc::chdir(c"/".as_ptr());
            // Let the daemon inherit the write end of the readiness pipe.
            if libc::fcntl(keep_fd, libc::F_SETFD, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// `ocxfs.log` in the platform's log directory (a temporary directory
/// without a home).
fn default_log_path() -> std::io::Result<PathBuf> {
    let dir = platform::log_dir().unwrap_or_else(|| std::env::temp_dir().join("ocxfs"));
    private_file::create_dir(&dir)?;
    Ok(dir.join("ocxfs.log"))
}
