//! ocxfs against a hostile API: redirects elsewhere, endless and looping
//! listings, malformed entries. Each test counts what reached which server,
//! the daemon's peak memory and exit code, and fails on a panic.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{EmulatorProc, KEY, bin, is_mounted, require_fuse, state_home, write};
use ocxfs_emulator::hostile::{HostileServer, Repeat, Rule};

/// How an `ocxfs mount --foreground` run went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Mounted,
    /// The exit code, and the peak resident memory in KiB.
    Exited {
        code: i32,
        peak_rss_kib: u64,
    },
}

/// `ocxfs mount --foreground` against `api`, its stderr in a log file;
/// stopped by process id and unmounted when dropped.
struct Daemon {
    child: Option<Child>,
    dir: PathBuf,
    log: PathBuf,
}

impl Daemon {
    fn start(api: &str, dir: &Path) -> Daemon {
        require_fuse();
        let log = dir.with_extension("log");
        let child = Command::new(bin())
            .arg("mount")
            .arg(dir)
            .arg("--foreground")
            .arg("--api-base")
            .arg(api)
            .env("ONE_CODEX_API_KEY", KEY)
            .env_remove("ONE_CODEX_BEARER_TOKEN")
            .env_remove("OCXFS_API_KEY")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env("XDG_STATE_HOME", state_home(dir))
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start ocxfs mount");
        Daemon {
            child: Some(child),
            dir: dir.to_owned(),
            log,
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Wait until the mount is there or the daemon has exited. The peak
    /// memory of a daemon that exits is the last high-water mark seen,
    /// sampled every 20 ms.
    fn outcome(&mut self) -> Outcome {
        let start = Instant::now();
        let mut peak_rss_kib = 0;
        loop {
            if is_mounted(&self.dir) {
                return Outcome::Mounted;
            }
            peak_rss_kib = peak_rss_kib.max(self.peak_rss_kib().unwrap_or(0));
            if let Some(status) = self.child.as_mut().expect("running").try_wait().unwrap() {
                self.child = None;
                let code = status
                    .code()
                    .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
                return Outcome::Exited { code, peak_rss_kib };
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "ocxfs neither mounted nor exited:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Peak resident memory of the running daemon so far, in KiB (none once
    /// it has exited).
    fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The run failed to mount: its exit code, peak memory and message.
    fn refused(&mut self) -> (i32, u64, String) {
        match self.outcome() {
            Outcome::Exited { code, peak_rss_kib } => (code, peak_rss_kib, self.log()),
            Outcome::Mounted => panic!("ocxfs mounted; it should have refused"),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let start = Instant::now();
            while child.try_wait().ok().flatten().is_none() {
                if start.elapsed() > Duration::from_secs(10) {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if is_mounted(&self.dir) {
            let _ = Command::new("fusermount3")
                .args(["-u", "-z"])
                .arg(&self.dir)
                .status();
        }
        let log = self.log();
        if !std::thread::panicking() {
            assert!(!log.contains("panicked"), "the daemon panicked:\n{log}");
        }
    }
}

/// An account with one document, the emulator serving it, a hostile server
/// in front of it, and another origin that records whatever reaches it.
struct Bed {
    tmp: tempfile::TempDir,
    _emulator: EmulatorProc,
    hostile: HostileServer,
    elsewhere: HostileServer,
}

impl Bed {
    fn new() -> Bed {
        let tmp = tempfile::tempdir().unwrap();
        write(&tmp.path().join("docs"), "hello.txt", b"hello, world\n");
        let emulator = EmulatorProc::start(&tmp.path().join("docs"), &[]);
        let hostile = HostileServer::start(Some(&emulator.url)).unwrap();
        let elsewhere = HostileServer::start(None).unwrap();
        Bed {
            tmp,
            _emulator: emulator,
            hostile,
            elsewhere,
        }
    }

    /// A fresh, empty mount point.
    fn mountpoint(&self, name: &str) -> PathBuf {
        let dir = self.tmp.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        dir
    }

    fn mount(&self, name: &str) -> Daemon {
        Daemon::start(self.hostile.base_url(), &self.mountpoint(name))
    }

    /// Requests that reached the other origin, and how many carried credentials.
    fn elsewhere(&self) -> (usize, usize) {
        let seen = self.elsewhere.requests();
        let keyed = seen.iter().filter(|s| s.has_credentials()).count();
        (seen.len(), keyed)
    }
}

#[test]
fn credentials_never_follow_a_redirect_to_another_origin() {
    let bed = Bed::new();
    let other_port = bed.elsewhere.base_url().to_owned();
    let other_host = other_port.replace("127.0.0.1", "localhost");
    let other_scheme = bed.hostile.base_url().replace("http://", "https://");
    // A Link to another origin is not followed either.
    bed.hostile.set_rules(vec![
        Rule::answer("GET", "/api/v1/projects", 200)
            .header(
                "Link",
                &format!("<{other_port}/api/v1/projects?page=2>; rel=\"next\""),
            )
            .body(r#"[{"$uri": "/api/v1/projects/p1", "name": "p"}]"#),
    ]);
    let (code, _, log) = bed.mount("link").refused();
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("Link points to another host"), "{log}");
    let cases = [
        ("/api/v1/account", format!("{other_port}/api/v1/account")),
        (
            "/api/v1/documents",
            format!("{other_host}/api/v1/documents"),
        ),
        ("/api/v1/samples", format!("{other_port}/api/v1/samples")),
        ("/api/v1/tags", format!("{other_scheme}/api/v1/tags")),
    ];
    for (i, (path, target)) in cases.iter().enumerate() {
        for status in [301, 302, 307, 308] {
            bed.hostile.set_rules(vec![
                Rule::answer("GET", path, status).header("Location", target),
            ]);
            let mut daemon = bed.mount(&format!("m{i}-{status}"));
            let (code, peak, log) = daemon.refused();
            eprintln!("redirect {status} of {path}: exit {code}, peak RSS {peak} KiB");
            assert_eq!(code, 1, "{log}");
            assert!(log.contains("redirect"), "{log}");
            assert!(!log.contains(KEY), "the key is never logged");
        }
    }
    let (reached, with_key) = bed.elsewhere();
    eprintln!("other origin: {reached} requests, {with_key} with credentials");
    assert_eq!((reached, with_key), (0, 0));

    // A redirect within the API's origin that never ends is given up.
    bed.hostile.set_rules(vec![Rule::redirect(
        "GET",
        "/api/v1/account",
        "{base}/api/v1/account?again={n}",
    )]);
    let before = bed.hostile.count("GET", "/api/v1/account");
    let (code, _, log) = bed.mount("endless-redirect").refused();
    let asked = bed.hostile.count("GET", "/api/v1/account") - before;
    eprintln!("endless same-origin redirect: exit {code} after {asked} requests");
    assert_eq!(code, 1, "{log}");
    assert!(asked <= 7, "{asked} requests");

    // A redirect within the API's origin is followed, with the key.
    bed.hostile.set_rules(vec![
        Rule::redirect(
            "GET",
            "/api/v1/tags",
            "{base}/api/v1/tags?per_page=1000&page=1&moved=1",
        )
        .times(1),
    ]);
    let before = bed.hostile.requests().len();
    let mut daemon = bed.mount("same-origin");
    assert_eq!(daemon.outcome(), Outcome::Mounted, "{}", daemon.log());
    let tags: Vec<_> = bed
        .hostile
        .requests()
        .into_iter()
        .skip(before)
        .filter(|s| s.uri.starts_with("/api/v1/tags"))
        .collect();
    assert_eq!(tags.len(), 2, "{tags:?}");
    assert!(tags.iter().all(|s| s.api_key), "{tags:?}");
}

#[test]
fn the_post_follows_no_redirect() {
    let bed = Bed::new();
    let targets = [
        format!("{}/steal", bed.elsewhere.base_url()),
        "{base}/api/v1/documents/loop/download_uri".to_owned(),
    ];
    for (i, target) in targets.iter().enumerate() {
        bed.hostile.set_rules(vec![
            Rule::answer("POST", "/api/v1/documents/", 307)
                .prefix()
                .header("Location", target),
        ]);
        let posts_before = bed.hostile.count("POST", "/");
        let mut daemon = bed.mount(&format!("m{i}"));
        assert_eq!(daemon.outcome(), Outcome::Mounted, "{}", daemon.log());
        let file = daemon.dir.join("documents/hello.txt");
        let read = std::fs::read(&file);
        let errno = read.as_ref().err().and_then(std::io::Error::raw_os_error);
        assert_eq!(errno, Some(libc::EIO), "{read:?}");
        let posts = bed.hostile.count("POST", "/") - posts_before;
        eprintln!(
            "POST answered 307 to {target}: {posts} POST, read failed with errno {errno:?}, peak RSS {} KiB",
            daemon.peak_rss_kib().unwrap()
        );
        assert_eq!(posts, 1, "{:?}", bed.hostile.requests());
        assert!(daemon.log().contains("redirect"), "{}", daemon.log());
    }
    assert_eq!(bed.elsewhere(), (0, 0));
}

/// A page of 1000 documents whose ids are unique within the page (and,
/// with `{n}`, across pages).
fn full_page(rule: Rule) -> Rule {
    rule.header("Content-Type", "application/json")
        .body("[")
        .repeat(Repeat {
            item: r#"{"$uri": "/api/v1/documents/{n}x{i}", "created_at": "2024-01-01T00:00:00Z", "filename": "f{n}-{i}.fastq", "size": 1000}"#.into(),
            separator: ",".into(),
            count: 1000,
            suffix: "]".into(),
        })
}

#[test]
fn endless_and_looping_listings_fail_fast_in_bounded_memory() {
    let bed = Bed::new();
    let loop_back = r#"<{base}/api/v1/documents?per_page=1000&page=1>; rel="next""#;
    let always_new = r#"<{base}/api/v1/documents?per_page=1000&page=p{n}>; rel="next""#;
    let endless_page = Rule::answer("GET", "/api/v1/documents", 200)
        .header("Content-Type", "application/json")
        .body("[")
        .repeat(Repeat {
            item: r#"{"$uri": "/api/v1/documents/x{i}", "created_at": "2024-01-01T00:00:00Z"}"#
                .into(),
            separator: ",".into(),
            count: u64::MAX,
            suffix: "]".into(),
        });
    let cases = [
        (
            "a Link back to the first page",
            full_page(Rule::answer("GET", "/api/v1/documents", 200)).header("Link", loop_back),
            "pagination loop",
        ),
        (
            "a new Link on every page",
            full_page(Rule::answer("GET", "/api/v1/documents", 200)).header("Link", always_new),
            "more than 1000000 entries",
        ),
        (
            "one endless page",
            endless_page,
            "larger than 67108864 bytes",
        ),
        (
            "an absurd X-Total-Count",
            full_page(Rule::answer("GET", "/api/v1/documents", 200))
                .header("X-Total-Count", "99999999999999999"),
            "announces 99999999999999999 entries",
        ),
    ];
    for (i, (what, rule, expected)) in cases.into_iter().enumerate() {
        bed.hostile.set_rules(vec![rule]);
        let gets_before = bed.hostile.count("GET", "/api/v1/documents");
        let mut daemon = bed.mount(&format!("m{i}"));
        let (code, peak, log) = daemon.refused();
        let pages = bed.hostile.count("GET", "/api/v1/documents") - gets_before;
        eprintln!("{what}: exit {code} after {pages} pages, peak RSS {peak} KiB");
        assert_eq!(code, 1, "{what}: {log}");
        assert!(log.contains(expected), "{what}: {log}");
        assert!(
            peak < 1024 * 1024,
            "{what}: peak RSS {peak} KiB is more than 1 GiB"
        );
    }
    assert_eq!(bed.elsewhere(), (0, 0));
}

#[test]
fn a_slow_listing_says_what_it_waits_for() {
    let bed = Bed::new();
    // Slowloris: the listing's page arrives one small piece a second.
    bed.hostile.set_rules(vec![
        Rule::answer("GET", "/api/v1/documents", 200)
            .header("Content-Type", "application/json")
            .body("[")
            .repeat(Repeat {
                item: r#"{"$uri": "/api/v1/documents/slow{i}", "created_at": "2024-01-01T00:00:00Z", "filename": "slow{i}"}"#.into(),
                separator: ",".into(),
                count: 5,
                suffix: "]".into(),
            })
            .chunk_delay_ms(1000),
    ]);
    let mut daemon = bed.mount("m");
    assert_eq!(daemon.outcome(), Outcome::Mounted, "{}", daemon.log());
    let log = daemon.log();
    assert!(
        log.contains("listing the account at") && log.contains("entries so far"),
        "{log}"
    );
    let names = std::fs::read_dir(daemon.dir.join("documents"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("slow")
        })
        .count();
    assert_eq!(names, 5);
}

#[test]
fn a_detached_mount_says_what_it_waits_for() {
    require_fuse();
    let bed = Bed::new();
    bed.hostile.set_rules(vec![
        Rule::answer("GET", "/api/v1/documents", 200)
            .header("Content-Type", "application/json")
            .body(r#"[{"$uri": "/api/v1/documents/late1", "created_at": "2024-01-01T00:00:00Z", "filename": "late.txt"}]"#)
            .delay_ms(5000),
    ]);
    let dir = bed.mountpoint("m");
    let out = Command::new(bin())
        .arg("mount")
        .arg(&dir)
        .args(["--api-base", bed.hostile.base_url()])
        .env("ONE_CODEX_API_KEY", KEY)
        .env_remove("OCXFS_API_KEY")
        .env_remove("RUST_LOG")
        .env("XDG_STATE_HOME", state_home(&dir))
        .output()
        .unwrap();
    let mounted = is_mounted(&dir);
    if mounted {
        // The daemon exits once its mount is gone.
        let _ = Command::new(bin()).arg("unmount").arg(&dir).status();
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && mounted, "{err}");
    assert!(
        err.contains("listing the account at") && err.contains("0 entries so far"),
        "{err}"
    );
}

#[test]
fn bad_entries_are_skipped_and_bad_numbers_made_safe() {
    let bed = Bed::new();
    let entry = |id: &str, rest: &str| {
        format!(
            r#"{{"$uri": "/api/v1/documents/{id}", "created_at": "2024-01-01T00:00:00Z"{rest}}}"#
        )
    };
    let mut page = b"[".to_vec();
    let mut add = |bytes: &[u8]| {
        if page.len() > 1 {
            page.push(b',');
        }
        page.extend_from_slice(bytes);
    };
    add(entry("aaaa0001", r#", "filename": "good.txt", "size": 5"#).as_bytes());
    // A raw byte that is not UTF-8 in the name.
    add(&[
        entry("aaaa0002", r#", "filename": "raw"#)
            .trim_end_matches('}')
            .as_bytes(),
        b"\xff\xfe.txt\"}",
    ]
    .concat());
    // Raw control bytes inside a name (invalid JSON): the page still parses.
    add(entry("aaaa0011", ", \"filename\": \"ctl\n\x01.txt\"").as_bytes());
    add(entry("aaaa0003", r#", "filename": "lone\ud800surrogate.txt""#).as_bytes());
    add(entry(
        "aaaa0004",
        r#", "filename": "max.bin", "size": 18446744073709551615"#,
    )
    .as_bytes());
    add(entry(
        "aaaa0005",
        r#", "filename": "two63.bin", "size": 9223372036854775808"#,
    )
    .as_bytes());
    add(entry("aaaa0006", r#", "filename": "huge.bin", "size": 1e400"#).as_bytes());
    add(entry(
        "aaaa0007",
        r#", "filename": "num.bin", "size": 123456789012345678901234567890"#,
    )
    .as_bytes());
    add(br#"{"filename": "no-uri.txt"}"#);
    add(br#"{"$uri": "/api/v1/documents/aaaa0008", "created_at": "yesterday", "filename": "bad-date.txt"}"#);
    add(entry("aaaa0009", r#", "filename": 42"#).as_bytes());
    // Deeper than any recursive parser's stack allows.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    add(entry(
        "aaaa0010",
        &format!(r#", "filename": "nested.txt", "description": {deep}"#),
    )
    .as_bytes());
    add(b"17");
    page.push(b']');
    bed.hostile.set_rules(vec![
        Rule::answer("GET", "/api/v1/documents", 200)
            .header("Content-Type", "application/json")
            .bytes(page),
    ]);
    let mut daemon = bed.mount("m");
    assert_eq!(daemon.outcome(), Outcome::Mounted, "{}", daemon.log());
    let docs = daemon.dir.join("documents");
    let ls = Command::new("ls").arg("-l").arg(&docs).output().unwrap();
    let listing = String::from_utf8_lossy(&ls.stdout).into_owned();
    eprintln!("ls -l exit {}:\n{listing}", ls.status);
    assert!(
        ls.status.success(),
        "{}",
        String::from_utf8_lossy(&ls.stderr)
    );
    assert!(!listing.contains('?'), "ls -l shows ?: {listing}");
    let names: Vec<String> = std::fs::read_dir(&docs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "good.txt",
        "ctl  .txt",
        "max.bin",
        "two63.bin",
        "huge.bin",
        "num.bin",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("raw") && n.ends_with(".txt")),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("lone") && n.ends_with("surrogate.txt")),
        "{names:?}"
    );
    let log = daemon.log();
    assert!(log.contains("skipping an entry"), "{log}");
    assert!(log.contains("impossible size"), "{log}");
    // No $uri, a bad date, a name that is a number, 17 and the deep nesting.
    assert!(log.contains("skipped=5"), "{log}");
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(daemon.dir.join(".ocxfs/stats.json")).unwrap())
            .unwrap();
    assert_eq!(stats["listing_skipped"], 5, "{stats}");
    eprintln!(
        "{} names mounted: {names:?}; peak RSS {} KiB",
        names.len(),
        daemon.peak_rss_kib().unwrap()
    );
}

#[test]
fn answers_that_are_not_the_api_fail_the_mount_cleanly() {
    let bed = Bed::new();
    let cases = [
        (
            "an HTML page",
            Rule::answer("GET", "/api/v1/account", 200)
                .header("Content-Type", "text/html")
                .body("<html><body>Welcome to the captive portal</body></html>"),
            "invalid response",
        ),
        (
            "an endless account",
            Rule::answer("GET", "/api/v1/account", 200)
                .body("{\"$uri\": \"")
                .repeat(Repeat {
                    item: "x".repeat(4096),
                    count: u64::MAX,
                    ..Repeat::default()
                }),
            "larger than",
        ),
        (
            "a huge header",
            Rule::answer("GET", "/api/v1/account", 200).header("X-Junk", &"j".repeat(1 << 20)),
            "error",
        ),
        (
            // reqwest here decodes no Content-Encoding: no decompression bomb.
            "a gzip-encoded answer",
            Rule::answer("GET", "/api/v1/account", 200)
                .header("Content-Encoding", "gzip")
                .header("Content-Type", "application/json")
                .bytes(vec![
                    0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xab, 0xae, 5, 0, 0x43, 0xbf, 0xa6, 0xa3,
                    2, 0, 0, 0,
                ]),
            "invalid response",
        ),
        (
            "a 60 KB cursor that leads back to itself",
            Rule::answer("GET", "/api/v1/samples", 200)
                .header("X-Next-Cursor", &"c".repeat(60_000))
                .body(
                    r#"[{"$uri": "/api/v1/samples/s{n}", "created_at": "2024-01-01T00:00:00Z"}]"#,
                ),
            "pagination loop",
        ),
        (
            "a documents listing that is not a list",
            Rule::answer("GET", "/api/v1/documents", 200).body(r#"{"documents": []}"#),
            "invalid response",
        ),
    ];
    for (i, (what, rule, expected)) in cases.into_iter().enumerate() {
        bed.hostile.set_rules(vec![rule]);
        let mut daemon = bed.mount(&format!("m{i}"));
        let (code, peak, log) = daemon.refused();
        eprintln!("{what}: exit {code}, peak RSS {peak} KiB");
        assert_eq!(code, 1, "{what}: {log}");
        assert!(log.contains(expected), "{what}: {log}");
    }
}
