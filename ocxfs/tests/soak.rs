//! Soak: many concurrent readers, sequential and random, over several
//! documents, with every storage fault injected at a few percent and URLs
//! expiring every few seconds. Each read must return the exact bytes (of
//! one version) or an error, never other bytes. (URLs that storage refuses
//! so soon after a refresh make their document back off: the `EIO`s the
//! soak prints are mostly those waits, when no POST is made.)
//!
//! CI runs a short version; `scripts/soak` runs it for longer through
//! `OCXFS_SOAK_SECONDS`.

// Mounted through fusermount3 and checked through /proc: Linux only
// (scripts/check-platforms type-checks the rest for macOS and FreeBSD).
#![cfg(target_os = "linux")]

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const MIB: usize = 1024 * 1024;
const DOCS: usize = 4;
const READERS: usize = 8;
const URL_TTL: u64 = 4;

#[derive(Default)]
struct Tally {
    reads_ok: u64,
    bytes: u64,
    wrong: u64,
    failed: BTreeMap<String, u64>,
}

/// A read is right if it equals the source, or a newer version of it
/// (the emulator's change fault XORs the whole object with one byte):
/// never a mix.
fn verdict(got: &[u8], want: &[u8]) -> bool {
    match (got.first(), want.first()) {
        (Some(g), Some(w)) => {
            let key = g ^ w;
            got.len() == want.len() && got.iter().zip(want).all(|(g, w)| g ^ w == key)
        }
        _ => got.len() == want.len(),
    }
}

fn errno_name(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EIO) => "EIO".into(),
        Some(libc::ESTALE) => "ESTALE".into(),
        Some(libc::ETIMEDOUT) => "ETIMEDOUT".into(),
        Some(libc::EACCES) => "EACCES".into(),
        Some(libc::ENOENT) => "ENOENT".into(),
        Some(n) => format!("errno {n}"),
        None => e.to_string(),
    }
}

fn reader(
    id: usize,
    files: Vec<std::path::PathBuf>,
    data: Arc<Vec<Vec<u8>>>,
    deadline: Instant,
    tally: Arc<Mutex<Tally>>,
) {
    let mut rng = Rng(0x1234_5678 + id as u64 * 7919);
    let fail = |tally: &Mutex<Tally>, e: &std::io::Error| {
        *tally
            .lock()
            .unwrap()
            .failed
            .entry(errno_name(e))
            .or_default() += 1;
    };
    while Instant::now() < deadline {
        let doc = rng.below(DOCS as u64) as usize;
        let want = &data[doc];
        // O_DIRECT: the kernel's page cache would otherwise answer most
        // reads after the first minute, and the faults would go untested.
        let f = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(&files[doc])
        {
            Ok(f) => f,
            Err(e) => {
                fail(&tally, &e);
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        let sequential = rng.below(2) == 0;
        let (mut off, reads) = if sequential {
            (
                rng.below(want.len() as u64) as usize,
                1 + rng.below(32) as usize,
            )
        } else {
            (0, 1 + rng.below(64) as usize)
        };
        for _ in 0..reads {
            let len = if sequential {
                1 + rng.below(MIB as u64) as usize
            } else {
                1 + rng.below(256 * 1024) as usize
            };
            if !sequential {
                off = rng.below(want.len() as u64) as usize;
            }
            let mut buf = vec![0; len];
            match f.read_at(&mut buf, off as u64) {
                Ok(n) => {
                    let end = (off + len).min(want.len());
                    let ok = n == end.saturating_sub(off)
                        && verdict(&buf[..n], &want[off.min(end)..end]);
                    let mut t = tally.lock().unwrap();
                    if ok {
                        t.reads_ok += 1;
                        t.bytes += n as u64;
                    } else {
                        t.wrong += 1;
                    }
                    off = end;
                }
                Err(e) => {
                    fail(&tally, &e);
                    break;
                }
            }
            if Instant::now() >= deadline {
                break;
            }
        }
    }
}

fn peak_rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn soak_with_faults_never_returns_wrong_bytes() {
    let seconds: u64 = std::env::var("OCXFS_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    let data: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..DOCS)
            .map(|i| pattern(24 * MIB + i * 4099, 31 + i as u64))
            .collect(),
    );
    for (i, d) in data.iter().enumerate() {
        write(&docs, &format!("doc{i}.fastq"), d);
    }
    let faults = [
        "storage_status:status=503,probability=0.02",
        "storage_status:status=500,probability=0.01",
        "storage_status:status=429,retry_after=1,probability=0.01",
        "reset:probability=0.02",
        "short_body:probability=0.02",
        "stall:seconds=3,probability=0.005",
        "expire:probability=0.01",
        "change:probability=0.0005",
        "api_status:route=post,status=500,probability=0.02",
    ];
    let mut emu_args = vec!["--url-ttl".to_owned(), URL_TTL.to_string()];
    for f in faults {
        emu_args.extend(["--fault".to_owned(), f.to_owned()]);
    }
    let emu_args: Vec<&str> = emu_args.iter().map(String::as_str).collect();
    let emu = EmulatorProc::start(&docs, &emu_args);
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    // OCXFS_SOAK_LOG=FILE keeps the daemon's trace log for a post-mortem.
    let log = std::env::var_os("OCXFS_SOAK_LOG").map(std::path::PathBuf::from);
    let m = MountProc::start_logged(
        &emu,
        &mnt,
        &[
            "--stall-timeout",
            "1",
            "--read-timeout",
            "20",
            "--max-memory",
            "64M",
        ],
        log.as_deref(),
    );
    let files: Vec<_> = (0..DOCS)
        .map(|i| m.docs().join(format!("doc{i}.fastq")))
        .collect();

    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let threads: Vec<_> = (0..READERS)
        .map(|i| {
            let (files, data, tally) = (files.clone(), data.clone(), tally.clone());
            std::thread::spawn(move || reader(i, files, data, deadline, tally))
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stats = emu.stats();
    let t = tally.lock().unwrap();
    let posts = stats["posts_total"].as_u64().unwrap();
    let injected = &stats["faults_injected"];
    let post_failures = injected["api_status"].as_u64().unwrap_or(0);
    // At most one POST per document per URL lifetime (plus one per early
    // expiry and per failed POST), whatever the number of readers.
    let lifetimes = (elapsed / URL_TTL as f64).ceil() as u64 + 1;
    let bound = DOCS as u64 * lifetimes + stats["expired_403"].as_u64().unwrap() + post_failures;
    let rss = peak_rss_kib(m.pid());
    println!(
        "soak: {elapsed:.0} s, {} reads ok, {:.2} GiB read, {} wrong, failed by errno {:?}",
        t.reads_ok,
        t.bytes as f64 / (1u64 << 30) as f64,
        t.wrong,
        t.failed
    );
    println!(
        "soak: POSTs {posts} (bound {bound}: {DOCS} documents x {lifetimes} URL lifetimes + {} expiries + {post_failures} failed POSTs); faults injected {injected}; peak RSS {} MiB",
        stats["expired_403"],
        rss / 1024
    );
    assert_eq!(t.wrong, 0, "wrong bytes were returned");
    assert!(t.reads_ok > 100, "too few reads succeeded: {}", t.reads_ok);
    assert!(posts <= bound, "POSTs {posts} over the bound {bound}");
    assert!(std::fs::metadata(m.docs()).is_ok(), "the mount died");
}
