//! Reads through the mount in every pattern the read-ahead engine must
//! handle: sequential, random, parallel, mixed. Every byte is checked
//! against the source; the emulator's counters show what was fetched.

// Mounted through fusermount3 and checked through /proc: Linux only
// (scripts/check-platforms type-checks the rest for macOS and FreeBSD).
#![cfg(target_os = "linux")]

mod common;

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use common::*;

const MIB: usize = 1024 * 1024;

struct Setup {
    _tmp: tempfile::TempDir,
    emu: EmulatorProc,
    mount: MountProc,
    data: Arc<Vec<u8>>,
}

impl Setup {
    fn new(size: usize, mount_args: &[&str]) -> Setup {
        let data = Arc::new(pattern(size, 77));
        let (tmp, emu, mnt) = one_document("reads.fastq", &data);
        let mount = MountProc::start(&emu, &mnt, mount_args);
        Setup {
            _tmp: tmp,
            emu,
            mount,
            data,
        }
    }

    fn file(&self) -> PathBuf {
        self.mount.docs().join("reads.fastq")
    }

    fn storage_bytes(&self) -> u64 {
        self.emu.stats()["storage_bytes"].as_u64().unwrap()
    }

    /// Bytes ocxfs holds in its block cache now.
    fn cached_bytes(&self) -> u64 {
        self.mount.stats()["memory"]["cached_bytes"]
            .as_u64()
            .unwrap()
    }
}

fn check_read(f: &std::fs::File, data: &[u8], offset: usize, len: usize) {
    let mut buf = vec![0; len];
    let n = f.read_at(&mut buf, offset as u64).unwrap();
    let want = &data[offset.min(data.len())..(offset + len).min(data.len())];
    assert_eq!(n, want.len(), "short read at {offset}+{len}");
    assert!(buf[..n] == *want, "wrong bytes at {offset}+{len}");
}

/// Stream the whole file with `dd bs=1M`, through the page cache.
fn dd_through(file: &std::path::Path) {
    let out = std::process::Command::new("dd")
        .arg(format!("if={}", file.display()))
        .args(["of=/dev/null", "bs=1M"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn sequential_reads_download_each_byte_once() {
    let s = Setup::new(80 * MIB + 4321, &[]);
    dd_through(&s.file());
    assert_eq!(
        s.storage_bytes(),
        s.data.len() as u64,
        "bytes fetched for one sequential read"
    );
    // What a sequential reader consumed lives in the page cache; ocxfs
    // keeps no second copy of it.
    assert!(
        s.cached_bytes() <= MIB as u64,
        "{} bytes still cached",
        s.cached_bytes()
    );
    // Read again: from the page cache, or (pages the kernel dropped) from
    // storage again, exact either way.
    assert_eq!(sha256sum(&s.file()), sha256(&s.data));
    // Small reads in order, from a fresh page cache: still exact.
    drop_page_cache(&s.file());
    let f = std::fs::File::open(s.file()).unwrap();
    let mut off = 0;
    while off < s.data.len() {
        check_read(&f, &s.data, off, 4096);
        off += 4096 * 97;
    }
}

#[test]
fn a_stream_from_an_odd_offset_leaves_no_blocks_behind() {
    use std::io::{Read, Seek, SeekFrom};
    let s = Setup::new(48 * MIB + 999, &[]);
    let start = 12_345;
    let mut f = std::fs::File::open(s.file()).unwrap();
    f.seek(SeekFrom::Start(start as u64)).unwrap();
    let mut got = Vec::new();
    f.read_to_end(&mut got).unwrap();
    assert!(got == s.data[start..], "wrong bytes");
    // Only the first read (not yet known to start a stream: up to 1 MiB)
    // and a block shared by two reads stay cached.
    assert!(
        s.cached_bytes() <= MIB as u64 + 2 * 64 * 1024,
        "{} bytes still cached",
        s.cached_bytes()
    );
}

#[test]
fn random_small_reads_fetch_little() {
    let s = Setup::new(256 * MIB, &[]);
    let f = std::fs::File::open(s.file()).unwrap();
    let before = s.storage_bytes();
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let reads = 400;
    for _ in 0..reads {
        let off = (rng.below((s.data.len() / 4096) as u64) * 4096) as usize;
        check_read(&f, &s.data, off, 4096);
    }
    let fetched = s.storage_bytes() - before;
    assert!(
        s.cached_bytes() >= (reads * 4096) as u64,
        "blocks of random reads stay cached"
    );
    let per_byte = fetched as f64 / (reads * 4096) as f64;
    assert!(
        per_byte <= 32.0,
        "random 4 KiB reads fetched {per_byte:.1} bytes per byte read"
    );
    // Unaligned reads across block edges, of all sizes.
    for _ in 0..300 {
        let off = rng.below(s.data.len() as u64 + 1000) as usize;
        let len = 1 + rng.below(300_000) as usize;
        check_read(&f, &s.data, off, len);
    }
}

#[test]
fn parallel_and_mixed_readers_all_get_exact_bytes_within_a_small_budget() {
    // A budget far below the file size: blocks are evicted and read-ahead
    // must back off, yet every byte stays right.
    let s = Setup::new(96 * MIB + 17, &["--max-memory", "24M"]);
    let mut threads = Vec::new();
    for t in 0..4u64 {
        let (file, data) = (s.file(), s.data.clone());
        threads.push(std::thread::spawn(move || {
            // Sequential over one quarter, 128 KiB at a time.
            let f = std::fs::File::open(&file).unwrap();
            let quarter = data.len() / 4;
            let mut off = quarter * t as usize;
            while off < quarter * (t as usize + 1) {
                check_read(&f, &data, off, 128 * 1024);
                off += 128 * 1024;
            }
        }));
    }
    for t in 0..3u64 {
        let (file, data) = (s.file(), s.data.clone());
        threads.push(std::thread::spawn(move || {
            // Random reads of random sizes.
            let f = std::fs::File::open(&file).unwrap();
            let mut rng = Rng(12345 + t);
            for _ in 0..200 {
                let off = rng.below(data.len() as u64) as usize;
                check_read(&f, &data, off, 1 + rng.below(2 * MIB as u64) as usize);
            }
        }));
    }
    {
        let (file, data) = (s.file(), s.data.clone());
        threads.push(std::thread::spawn(move || {
            // Mixed: sequential runs broken by far seeks, both directions.
            let f = std::fs::File::open(&file).unwrap();
            let mut rng = Rng(999);
            for _ in 0..12 {
                let mut off = rng.below(data.len() as u64) as usize;
                for _ in 0..24 {
                    check_read(&f, &data, off, 256 * 1024);
                    off += 256 * 1024;
                }
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(sha256sum(&s.file()), sha256(&s.data));
    assert_eq!(s.emu.posts_total(), 1);
}

#[test]
fn a_stream_keeps_its_blocks_while_another_handle_is_open() {
    use std::os::unix::fs::OpenOptionsExt;
    let s = Setup::new(24 * MIB + 5, &[]);
    // Open first, read later, past the page cache.
    let direct = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(s.file())
        .unwrap();
    dd_through(&s.file());
    let mut off = 0;
    while off < s.data.len() {
        check_read(&direct, &s.data, off, MIB);
        off += MIB;
    }
    assert_eq!(s.storage_bytes(), s.data.len() as u64, "fetched once");
}

#[test]
fn two_readers_of_one_file_download_it_once() {
    let s = Setup::new(64 * MIB, &[]);
    let readers: Vec<_> = (0..2)
        .map(|_| {
            std::process::Command::new("sha256sum")
                .arg(s.file())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for r in readers {
        let out = r.wait_with_output().unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).starts_with(&sha256(&s.data)));
    }
    assert_eq!(s.storage_bytes(), s.data.len() as u64);
}
