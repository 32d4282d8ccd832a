//! Test harness: a real `ocxfs emulator` process and real FUSE mounts of
//! `ocxfs mount`, both stopped by process id when the test ends.
//!
//! Mounted tests run on Linux only: a test file that mounts starts with
//! `#![cfg(target_os = "linux")]`, so that scripts/check-platforms can
//! type-check the rest for macOS and FreeBSD.
#![allow(dead_code)]

pub mod redis;
pub mod unmounted;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const KEY: &str = "0cxf5dem0000000000000000000000ke";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ocxfs")
}

/// FUSE is required: a test that needs it fails loudly without it.
pub fn require_fuse() {
    assert!(
        Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: these tests need FUSE (install fuse3, load the fuse module)"
    );
    let fusermount = Command::new("fusermount3").arg("-V").output();
    assert!(
        fusermount.is_ok(),
        "fusermount3 is missing: install the fuse3 package"
    );
}

pub struct EmulatorProc {
    child: Child,
    pub url: String,
}

impl EmulatorProc {
    pub fn start(docs: &Path, extra: &[&str]) -> EmulatorProc {
        let mut child = Command::new(bin())
            .arg("emulator")
            .arg("--docs")
            .arg(docs)
            .args(extra)
            .env("OCXFS_EMULATOR_API_KEY", KEY)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the emulator");
        let mut first = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut first).expect("emulator output");
        // Keep draining what else it prints.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let url = first.trim().to_owned();
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "emulator printed {first:?}"
        );
        EmulatorProc { child, url }
    }

    pub fn curl(&self, args: &[&str]) -> String {
        let out = Command::new("curl")
            .arg("-sS")
            .args(args)
            .output()
            .expect("run curl");
        assert!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn stats(&self) -> serde_json::Value {
        serde_json::from_str(&self.curl(&[&format!("{}/_emulator/stats", self.url)])).unwrap()
    }

    /// Add a fault (`_emulator/faults`, the JSON form).
    pub fn fault(&self, json: serde_json::Value) {
        self.curl(&[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            &json.to_string(),
            &format!("{}/_emulator/faults", self.url),
        ]);
    }

    pub fn control(&self, path: &str) {
        self.curl(&["-X", "POST", &format!("{}/_emulator/{path}", self.url)]);
    }

    pub fn posts(&self, id: &str) -> u64 {
        self.stats()["posts"][id].as_u64().unwrap_or(0)
    }

    pub fn posts_total(&self) -> u64 {
        self.stats()["posts_total"].as_u64().unwrap()
    }

    /// The document listing as the API gives it: (id, filename, size).
    pub fn documents(&self) -> Vec<(String, String, Option<u64>)> {
        self.listing("documents")
    }

    /// A listing (`documents` or `samples`): (id, filename, size).
    fn listing(&self, what: &str) -> Vec<(String, String, Option<u64>)> {
        let body = self.curl(&[
            "-H",
            &format!("X-API-Key: {KEY}"),
            &format!("{}/api/v1/{what}?per_page=1000", self.url),
        ]);
        let docs: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        docs.iter()
            .map(|d| {
                let id = d["$uri"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_owned();
                (
                    id,
                    d["filename"].as_str().unwrap().to_owned(),
                    d["size"].as_u64(),
                )
            })
            .collect()
    }

    /// The id of the document whose filename is `name` (must be unique).
    pub fn id_of(&self, name: &str) -> String {
        self.id_in("documents", name)
    }

    /// The id of the item of listing `what` whose filename is `name`.
    pub fn id_in(&self, what: &str, name: &str) -> String {
        let items = self.listing(what);
        let hits: Vec<_> = items.iter().filter(|d| d.1 == name).collect();
        assert_eq!(hits.len(), 1, "{name} should be listed once");
        hits[0].0.clone()
    }
}

impl Drop for EmulatorProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn is_mounted(dir: &Path) -> bool {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    mounts
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(dir.to_str().unwrap()))
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `ocxfs mount --foreground` on a directory, unmounted and stopped when
/// dropped.
pub struct MountProc {
    child: Option<Child>,
    pub dir: PathBuf,
}

impl MountProc {
    pub fn start(emu: &EmulatorProc, dir: &Path, extra: &[&str]) -> MountProc {
        Self::start_logged(emu, dir, extra, None)
    }

    /// Like `start`, with the daemon's log (at trace level) in `log`.
    pub fn start_logged(
        emu: &EmulatorProc,
        dir: &Path,
        extra: &[&str],
        log: Option<&Path>,
    ) -> MountProc {
        let mut cmd = mount_command(&emu.url, dir, extra);
        cmd.arg("--foreground");
        if let Some(p) = log {
            cmd.stderr(Stdio::from(std::fs::File::create(p).unwrap()))
                .env("RUST_LOG", "trace");
        }
        MountProc::spawn(cmd, dir)
    }

    /// Start `cmd` (`mount_command` with `--foreground`) and wait for its mount on `dir`.
    pub fn spawn(mut cmd: Command, dir: &Path) -> MountProc {
        require_fuse();
        let child = cmd.spawn().expect("start ocxfs mount");
        let mut m = MountProc {
            child: Some(child),
            dir: dir.to_owned(),
        };
        let start = Instant::now();
        while !is_mounted(dir) {
            if let Some(status) = m.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("ocxfs mount exited with {status} before mounting");
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "mount did not appear"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    pub fn docs(&self) -> PathBuf {
        self.dir.join("documents")
    }

    /// The mount's counters, as `.ocxfs/stats.json` has them now.
    pub fn stats(&self) -> serde_json::Value {
        let stats = std::fs::read(self.dir.join(".ocxfs/stats.json")).unwrap();
        serde_json::from_slice(&stats).unwrap()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("still running");
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                panic!("ocxfs did not exit within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for MountProc {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.terminate()));
        }
        if is_mounted(&self.dir) {
            let _ = Command::new("fusermount3")
                .args(["-u", "-z"])
                .arg(&self.dir)
                .status();
        }
    }
}

/// `ocxfs mount DIR` against the API at `api_base`, with the
/// test key, a per-test state directory, no proxy from the environment and
/// the system's CA roots.
pub fn mount_command(api_base: &str, dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("mount")
        .arg(dir)
        .arg("--api-base")
        .arg(api_base)
        .args(extra)
        .env("ONE_CODEX_API_KEY", KEY)
        .env_remove("ONE_CODEX_BEARER_TOKEN")
        .env_remove("OCXFS_API_KEY")
        .env("RUST_LOG", "warn,ocxfs=debug")
        .env("XDG_STATE_HOME", state_home(dir));
    for var in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// A temporary account with one document `name`, its emulator, and an
/// empty mount point.
pub fn one_document(name: &str, data: &[u8]) -> (tempfile::TempDir, EmulatorProc, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    write(&docs, name, data);
    let emu = EmulatorProc::start(&docs, &[]);
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    (tmp, emu, mnt)
}

/// Per-test state directory (kept URLs, logs), beside the mount point.
pub fn state_home(mountpoint: &Path) -> PathBuf {
    mountpoint.parent().unwrap().join("state")
}

/// Wait for a condition on the mount (e.g. a process to exit).
pub fn eventually(what: &str, f: impl FnMut() -> bool) {
    wait_until(what, Duration::from_secs(15), f);
}

pub fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(data))
}

/// `sha256sum FILE` through the real tool.
pub fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("run sha256sum");
    assert!(
        out.status.success(),
        "sha256sum {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// Drop the kernel's cached pages of a file, so the next reads reach ocxfs.
#[cfg(target_os = "linux")]
pub fn drop_page_cache(path: &Path) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: a valid descriptor; advice has no memory effects.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0);
}

/// A small deterministic generator (xorshift) for offsets and lengths.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Run a command that must succeed; its output.
pub fn run_ok(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn write(dir: &Path, rel: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, data).unwrap();
    p
}
