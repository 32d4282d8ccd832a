//! Running ocxfs for real: the `mount.fuse.ocxfs` helper and `-o` options,
//! presigned URLs kept across remounts, and `ocxfs stats`.

// Mounted through fusermount3 and checked through /proc: Linux only
// (scripts/check-platforms type-checks the rest for macOS and FreeBSD).
#![cfg(target_os = "linux")]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;

const MIB: usize = 1024 * 1024;

/// A temporary directory with two documents, their emulator, an empty
/// mount point, and a place for a disk cache.
struct Fixture {
    tmp: tempfile::TempDir,
    data: Vec<Vec<u8>>,
    emu: EmulatorProc,
    mnt: std::path::PathBuf,
    cache: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let data = docs(&tmp.path().join("docs"));
    let emu = EmulatorProc::start(&tmp.path().join("docs"), &[]);
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let cache = tmp.path().join("cache");
    Fixture {
        tmp,
        data,
        emu,
        mnt,
        cache,
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // A daemon started through `mount -t` is no child of the test: it
        // ends with its mount, which a failed test may have left.
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}

impl Fixture {
    /// A disk cache and no kept URLs: only the disk cache can spare POSTs.
    fn disk_cache_only(&self) -> [&str; 3] {
        [
            "--cache-dir",
            self.cache.to_str().unwrap(),
            "--no-persist-urls",
        ]
    }

    fn mount(&self, args: &[&str]) -> MountProc {
        MountProc::start(&self.emu, &self.mnt, args)
    }

    /// Read both documents through `m`; every byte must be right.
    fn read_both(&self, m: &MountProc) {
        assert!(std::fs::read(m.docs().join("a.fastq")).unwrap() == self.data[0]);
        assert!(std::fs::read(m.docs().join("b.csv")).unwrap() == self.data[1]);
    }
}

fn docs(dir: &Path) -> Vec<Vec<u8>> {
    let a = pattern(3 * MIB + 5, 1);
    let b = pattern(700_000, 2);
    write(dir, "a.fastq", &a);
    write(dir, "b.csv", &b);
    vec![a, b]
}

#[test]
fn the_mount_helper_takes_mount_options() {
    require_fuse();
    let f = fixture();
    let key = f.tmp.path().join("key");
    std::fs::write(&key, format!("{KEY}\n")).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let helper = f.tmp.path().join("mount.fuse.ocxfs");
    std::os::unix::fs::symlink(bin(), &helper).unwrap();
    let opts = format!(
        "api_base={},api_key_file={},_netdev,nosuid,listing_ttl=5,log_file={}",
        f.emu.url,
        key.display(),
        f.tmp.path().join("log").display()
    );
    run_ok(
        Command::new(&helper)
            .args(["none", f.mnt.to_str().unwrap(), "-o", &opts])
            .env_remove("ONE_CODEX_API_KEY")
            .env("XDG_STATE_HOME", f.tmp.path().join("state")),
    );
    let mounted = is_mounted(&f.mnt);
    let read = std::fs::read(f.mnt.join("documents/b.csv"));
    let un = Command::new(bin())
        .arg("unmount")
        .arg(&f.mnt)
        .status()
        .unwrap();
    assert!(mounted);
    assert!(read.unwrap() == f.data[1]);
    assert!(un.success() && !is_mounted(&f.mnt));

    // An API key in the options would be visible to every user: refused.
    let out = Command::new(&helper)
        .args(["none", f.mnt.to_str().unwrap(), "-o", "api_key=abc"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("api_key_file"));
}

#[test]
fn mount_dash_t_fuse_ocxfs_works_through_the_installed_helper() {
    require_fuse();
    // SAFETY: getuid cannot fail.
    assert_eq!(
        unsafe { libc::getuid() },
        0,
        "mount -t needs root (CI runs as root)"
    );
    let installed = Path::new("/sbin/mount.fuse.ocxfs");
    let ours = !installed.exists();
    if ours {
        std::os::unix::fs::symlink(bin(), installed).unwrap();
    }
    struct Remove(bool);
    impl Drop for Remove {
        fn drop(&mut self) {
            if self.0 {
                let _ = std::fs::remove_file("/sbin/mount.fuse.ocxfs");
            }
        }
    }
    let _remove = Remove(ours);
    let f = fixture();
    let key = f.tmp.path().join("key");
    std::fs::write(&key, KEY).unwrap();
    let status = Command::new("mount")
        .args(["-t", "fuse.ocxfs", "none", f.mnt.to_str().unwrap(), "-o"])
        .arg(format!(
            "api_base={},api_key_file={}",
            f.emu.url,
            key.display()
        ))
        .env("XDG_STATE_HOME", f.tmp.path().join("state"))
        .status()
        .unwrap();
    assert!(status.success());
    let read = std::fs::read(f.mnt.join("documents/a.fastq"));
    let un = Command::new("umount").arg(&f.mnt).output().unwrap();
    assert!(read.unwrap() == f.data[0]);
    assert!(
        un.status.success() && !is_mounted(&f.mnt),
        "umount: {:?} {}",
        un.status,
        String::from_utf8_lossy(&un.stderr)
    );
}

#[test]
fn a_remount_within_the_url_lifetime_makes_no_post() {
    let f = fixture();
    {
        let m = f.mount(&[]);
        f.read_both(&m);
    }
    assert_eq!(f.emu.posts_total(), 2);
    {
        let m = f.mount(&[]);
        f.read_both(&m);
    }
    assert_eq!(f.emu.posts_total(), 2, "the remount reused the kept URLs");
    let urls = state_home(&f.mnt).join("ocxfs/urls");
    assert_eq!(
        std::fs::metadata(&urls).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let files: Vec<_> = std::fs::read_dir(&urls)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(
        std::fs::metadata(&files[0]).unwrap().permissions().mode() & 0o777,
        0o600
    );
    {
        let m = f.mount(&["--no-persist-urls"]);
        f.read_both(&m);
    }
    assert_eq!(
        f.emu.posts_total(),
        4,
        "without kept URLs each file POSTs again"
    );
}

#[test]
fn stats_json_matches_the_emulator_counters() {
    let f = fixture();
    let m = f.mount(&[]);
    for _ in 0..3 {
        assert!(std::fs::read(m.docs().join("a.fastq")).unwrap() == f.data[0]);
    }
    assert!(std::fs::read(m.docs().join("b.csv")).unwrap() == f.data[1]);
    let out = run_ok(Command::new(bin()).args(["stats", "--json"]).arg(&f.mnt));
    let ours: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let theirs = f.emu.stats();
    assert_eq!(ours["posts"], theirs["posts_total"]);
    for (id, n) in theirs["posts"].as_object().unwrap() {
        assert_eq!(
            &ours["posts_by_object"][format!("documents/{id}")],
            n,
            "{id}"
        );
    }
    let gets = theirs["range_gets"].as_u64().unwrap() + theirs["full_gets"].as_u64().unwrap();
    assert_eq!(ours["storage_gets"].as_u64().unwrap(), gets);
    assert_eq!(ours["bytes_fetched"], theirs["storage_bytes"]);
    assert_eq!(
        ours["bytes_fetched"].as_u64().unwrap(),
        (f.data[0].len() + f.data[1].len()) as u64
    );
    assert_eq!(ours["documents"], 2);
    let human = Command::new(bin())
        .args(["stats", "--per-document"])
        .arg(&f.mnt)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("POSTs (download_uri)        2"), "{text}");
    assert!(text.contains("documents/"), "{text}");
}

#[test]
fn the_daemon_tells_systemd_when_it_is_ready_and_stopping() {
    require_fuse();
    let f = fixture();
    let socket_path = f.tmp.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut child = Command::new(bin())
        .arg("mount")
        .arg(&f.mnt)
        .args(["--foreground", "--api-base", &f.emu.url, "--api-key", KEY])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("XDG_STATE_HOME", f.tmp.path().join("state"))
        .spawn()
        .unwrap();
    let mut buf = [0u8; 64];
    let n = socket.recv(&mut buf);
    let ready_and_mounted = n
        .as_ref()
        .map(|n| says(&buf[..*n], "READY=1"))
        .unwrap_or(false)
        && is_mounted(&f.mnt);
    // SAFETY: plain kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let stopping = socket.recv(&mut buf).map(|n| says(&buf[..n], "STOPPING=1"));
    let status = child.wait().unwrap();
    assert!(
        ready_and_mounted,
        "READY=1 must come once the mount answers"
    );
    assert!(stopping.unwrap(), "STOPPING=1 must come on SIGTERM");
    assert!(status.success());
    assert!(!is_mounted(&f.mnt));
}

/// Whether a notification datagram (newline-separated `KEY=VALUE` lines,
/// as sd_notify(3) has them) holds `line`.
fn says(datagram: &[u8], line: &str) -> bool {
    datagram
        .split(|&b| b == b'\n')
        .any(|l| l == line.as_bytes())
}

fn file_sizes(dir: &Path) -> Vec<(std::path::PathBuf, u64, u32)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let meta = e.metadata().unwrap();
        if meta.is_dir() {
            out.extend(file_sizes(&e.path()));
        } else {
            out.push((e.path(), meta.len(), meta.permissions().mode() & 0o777));
        }
    }
    out
}

fn stats_json(mnt: &Path) -> serde_json::Value {
    let out = run_ok(Command::new(bin()).args(["stats", "--json"]).arg(mnt));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_disk_cache_serves_a_remount_with_no_post_and_no_get() {
    let f = fixture();
    let args = f.disk_cache_only();
    {
        let m = f.mount(&args);
        f.read_both(&m);
    }
    assert_eq!(f.emu.posts_total(), 2);
    let files = file_sizes(&f.cache);
    assert!(files.iter().all(|(_, _, mode)| *mode == 0o600), "{files:?}");
    f.emu.control("reset-stats");
    let m = f.mount(&args);
    f.read_both(&m);
    let theirs = f.emu.stats();
    assert_eq!(theirs["posts_total"], 0, "{theirs}");
    assert_eq!(theirs["range_gets"], 0, "{theirs}");
    let ours = stats_json(&f.mnt);
    let blocks = f
        .data
        .iter()
        .map(|d| d.len().div_ceil(64 * 1024) as u64)
        .sum::<u64>();
    assert_eq!(
        ours["disk_cache"]["hits"].as_u64().unwrap(),
        blocks,
        "{ours}"
    );
    assert_eq!(ours["posts"], 0);
}

#[test]
fn a_damaged_disk_block_is_detected_and_fetched_again() {
    let f = fixture();
    let args = ["--cache-dir", f.cache.to_str().unwrap()];
    {
        let m = f.mount(&args);
        assert!(std::fs::read(m.docs().join("b.csv")).unwrap() == f.data[1]);
    }
    // Flip one byte in the data of one block of b.csv.
    let id = f.emu.id_of("b.csv");
    let (block, _, _) = file_sizes(&f.cache)
        .into_iter()
        .find(|(p, len, _)| {
            p.to_str().unwrap().contains(&id) && p.file_name().unwrap() == "3" && *len > 1000
        })
        .expect("block 3 of b.csv on disk");
    let mut raw = std::fs::read(&block).unwrap();
    raw[1000] ^= 0x40;
    std::fs::write(&block, &raw).unwrap();
    f.emu.control("reset-stats");
    let m = f.mount(&args);
    assert!(
        std::fs::read(m.docs().join("b.csv")).unwrap() == f.data[1],
        "the damage reached a reader"
    );
    let ours = stats_json(&f.mnt);
    assert_eq!(ours["disk_cache"]["damaged_blocks"], 1, "{ours}");
    let gets = f.emu.stats()["range_gets"].as_u64().unwrap();
    assert!(gets >= 1, "the damaged block was fetched again");
}

#[test]
fn the_disk_cache_stays_under_its_limit() {
    let f = fixture();
    let limit = 1024 * 1024;
    let m = f.mount(&[
        "--cache-dir",
        f.cache.to_str().unwrap(),
        "--max-cache-size",
        "1M",
    ]);
    f.read_both(&m);
    drop(m);
    let blocks: u64 = file_sizes(&f.cache)
        .iter()
        .filter(|(p, _, _)| p.file_name().unwrap() != "meta.json")
        .map(|(_, len, _)| len)
        .sum();
    assert!(
        blocks <= limit,
        "{blocks} bytes of blocks on disk, limit {limit}"
    );
    assert!(blocks > limit / 2, "the cache was used: {blocks}");
}

#[test]
fn prefetch_says_what_it_will_post_then_fills_the_disk_cache() {
    let f = fixture();
    let args = f.disk_cache_only();
    {
        let m = f.mount(&args);
        // Without --yes and nobody to ask: nothing happens.
        let refused = Command::new(bin())
            .arg("prefetch")
            .arg(m.docs())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(!refused.status.success());
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(
            said.contains("2 files") && said.contains("at most 2 download_uri POSTs"),
            "{said}"
        );
        assert!(said.contains("--yes"), "{said}");
        assert_eq!(f.emu.posts_total(), 0);
        let out = Command::new(bin())
            .args(["prefetch", "--yes"])
            .arg(m.docs())
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{said}");
        assert!(said.contains("2 of 2 files read"), "{said}");
        assert!(said.contains("2 download_uri POSTs made"), "{said}");
        assert_eq!(f.emu.posts_total(), 2);
        // Once the URLs are cached, the same prefetch announces no POST.
        let again = Command::new(bin())
            .args(["prefetch"])
            .arg(m.docs())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(again.status.success());
        assert!(String::from_utf8_lossy(&again.stderr).contains("at most 0 download_uri POSTs"));
    }
    f.emu.control("reset-stats");
    let m = f.mount(&args);
    assert!(std::fs::read(m.docs().join("a.fastq")).unwrap() == f.data[0]);
    assert_eq!(f.emu.stats()["range_gets"], 0, "served from the disk cache");
}
