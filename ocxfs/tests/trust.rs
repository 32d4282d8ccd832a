//! Trust under broken servers through a real mount: the POST never loops,
//! absurd numbers never crash, memory stays bounded, sizes never truncate.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

const MIB: usize = 1024 * 1024;

/// An emulator serving `files` (name, bytes), and a mount point beside it.
struct Account {
    tmp: tempfile::TempDir,
    emu: EmulatorProc,
}

impl Account {
    fn new(files: &[(&str, &[u8])], emu_args: &[&str]) -> Account {
        let tmp = tempfile::tempdir().unwrap();
        for (name, data) in files {
            write(&tmp.path().join("docs"), name, data);
        }
        let emu = EmulatorProc::start(&tmp.path().join("docs"), emu_args);
        Account { tmp, emu }
    }

    fn mountpoint(&self) -> PathBuf {
        let mnt = self.tmp.path().join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        mnt
    }

    fn mount(&self, args: &[&str]) -> MountProc {
        MountProc::start(&self.emu, &self.mountpoint(), args)
    }
}

/// Open and read the first bytes; the errno when either fails.
fn open_and_read(path: &Path) -> Result<usize, i32> {
    let errno = |e: std::io::Error| e.raw_os_error().unwrap_or(0);
    let mut f = std::fs::File::open(path).map_err(errno)?;
    let mut buf = vec![0; 4096];
    f.read(&mut buf).map_err(errno)
}

/// Storage calls every URL expired (a skewed clock is enough): one POST at
/// open, one refresh, then the file backs off 10 s, then 20 s: three POSTs
/// in 12 s of reads by four tools at once, not one per read.
#[test]
fn storage_that_says_expired_forever_costs_three_posts_in_twelve_seconds() {
    let data = pattern(MIB, 11);
    let acct = Account::new(&[("data.bin", &data)], &[]);
    let m = acct.mount(&[]);
    let file = m.docs().join("data.bin");
    acct.emu.fault(serde_json::json!({"kind": "expire"}));
    let started = Instant::now();
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let file = file.clone();
            std::thread::spawn(move || {
                let mut outcomes = Vec::new();
                while started.elapsed() < Duration::from_secs(12) {
                    outcomes.push(open_and_read(&file));
                    std::thread::sleep(Duration::from_millis(50));
                }
                // Failed reads leave nothing in the page cache to drop.
                outcomes
            })
        })
        .collect();
    let outcomes: Vec<_> = readers
        .into_iter()
        .flat_map(|r| r.join().unwrap())
        .collect();
    assert!(outcomes.len() > 100, "{} reads", outcomes.len());
    assert!(
        outcomes.iter().all(|o| *o == Err(libc::EIO)),
        "every read fails with EIO: {outcomes:?}"
    );
    assert_eq!(acct.emu.posts(&acct.emu.id_of("data.bin")), 3);
}

/// The POST answered with errors: each file gets one POST however often
/// it is opened.
#[test]
fn failed_post_answers_cost_one_post_each() {
    let data = pattern(4096, 12);
    let statuses = [500u16, 402, 403, 429, 200];
    let names: Vec<String> = statuses.iter().map(|s| format!("{s}.bin")).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &data[..])).collect();
    let acct = Account::new(&files, &[]);
    let m = acct.mount(&[]);
    for status in statuses.into_iter().filter(|s| *s != 200) {
        let id = acct.emu.id_of(&format!("{status}.bin"));
        acct.emu.fault(
            serde_json::json!({"kind": "api_status", "route": "post", "status": status, "doc": id}),
        );
    }
    for name in &names {
        let file = m.docs().join(name);
        let outcomes: Vec<_> = (0..20).map(|_| open_and_read(&file)).collect();
        let posts = acct.emu.posts(&acct.emu.id_of(name));
        assert_eq!(posts, 1, "{name}: {outcomes:?}");
        if name == "200.bin" {
            assert!(outcomes.iter().all(|o| *o == Ok(4096)), "{outcomes:?}");
        } else {
            assert!(outcomes.iter().all(|o| o.is_err()), "{name}: {outcomes:?}");
        }
    }
    assert_eq!(acct.emu.posts_total(), names.len() as u64);
}

/// `expires_in_hours` near 2^64 once overflowed the expiry arithmetic (a
/// panic, and a state file that crashed every later mount). Now it is
/// clamped: the file reads, the mount survives a remount, and an
/// impossible entry in the state file is dropped, costing one POST.
#[test]
fn an_absurd_url_lifetime_is_clamped_and_survives_remounts() {
    let data = pattern(100_000, 13);
    let acct = Account::new(
        &[("data.bin", &data)],
        &["--url-ttl", &u64::MAX.to_string()],
    );
    let id = acct.emu.id_of("data.bin");
    let mut m = acct.mount(&[]);
    assert!(std::fs::read(m.docs().join("data.bin")).unwrap() == data);
    assert!(m.terminate().success());
    let mut m = acct.mount(&[]);
    assert!(std::fs::read(m.docs().join("data.bin")).unwrap() == data);
    assert_eq!(acct.emu.posts(&id), 1, "the kept URL is reused");
    assert!(m.terminate().success());
    // A state file whose entry claims to live for ever (or is no entry at
    // all) is read, the bad entry dropped.
    let urls = state_home(&acct.mountpoint()).join("ocxfs/urls");
    for (i, entry) in [
        serde_json::json!({"url": "http://127.0.0.1:1/x", "valid_until": u64::MAX}),
        serde_json::json!({"url": 5, "valid_until": -1.5}),
    ]
    .into_iter()
    .enumerate()
    {
        for state in std::fs::read_dir(&urls).unwrap() {
            let path = state.unwrap().path();
            let mut file: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            file["urls"][format!("documents/{id}")] = entry.clone();
            std::fs::write(&path, file.to_string()).unwrap();
        }
        let mut m = acct.mount(&[]);
        assert!(std::fs::read(m.docs().join("data.bin")).unwrap() == data);
        assert_eq!(acct.emu.posts(&id), 2 + i as u64, "{entry}");
        assert!(m.terminate().success());
    }
}
