//! The core mount, end to end: a real `ocxfs emulator`, a real FUSE mount,
//! and real tools (cp, cat, sha256sum, dd, sh) reading through it.

// Mounted through fusermount3 and checked through /proc: Linux only
// (scripts/check-platforms type-checks the rest for macOS and FreeBSD).
#![cfg(target_os = "linux")]

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

const MIB: usize = 1024 * 1024;

/// A documents directory with every naming hazard, plus a manifest for what
/// a disk cannot hold (names over 255 bytes, slashes, null sizes).
fn tricky_docs(root: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let docs = root.join("docs");
    write(&docs, "a/report.pdf", &pattern(300_000, 1));
    write(&docs, "b/report.pdf", &pattern(1_000, 2));
    write(&docs, "Röö's report.pdf", &pattern(70_000, 3));
    write(&docs, "andy's report.pdf", &pattern(65_536, 4));
    write(&docs, "empty.bin", b"");
    write(&docs, "sizeless.fastq", &pattern(2 * MIB + 123, 5));
    write(&docs, "long.dat", &pattern(5_000, 6));
    write(&docs, "slash.dat", &pattern(10, 7));
    let long_name = format!("{}.fastq.gz", "x".repeat(300));
    let manifest = root.join("manifest.json");
    std::fs::write(
        &manifest,
        serde_json::json!([
            {"path": "sizeless.fastq", "null_size": true},
            {"path": "long.dat", "filename": long_name},
            {"path": "slash.dat", "filename": "runs/2024 summary.txt"},
        ])
        .to_string(),
    )
    .unwrap();
    (docs, manifest)
}

/// The names in a directory, less the `.by-id` view.
/// The tricky documents under `root`, their emulator, and a mount of it.
fn tricky_mount(root: &Path) -> (std::path::PathBuf, EmulatorProc, MountProc) {
    let (docs, manifest) = tricky_docs(root);
    let emu = EmulatorProc::start(&docs, &["--manifest", manifest.to_str().unwrap()]);
    let mnt = root.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let m = MountProc::start(&emu, &mnt, &[]);
    (docs, emu, m)
}

fn names_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != ".by-id" && n != ".ocxfs")
        .collect()
}

#[test]
fn lists_every_document_with_safe_unique_names_and_right_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let (docs, emu, m) = tricky_mount(tmp.path());

    assert_eq!(
        names_in(&m.dir),
        BTreeSet::from(["documents".to_owned(), "samples".to_owned()])
    );
    let listed = emu.documents();
    let id = |path_name: &str, size: u64| {
        listed
            .iter()
            .find(|d| d.1 == path_name && d.2.is_none_or(|s| s == size))
            .unwrap()
            .0
            .clone()
    };
    let long = listed.iter().find(|d| d.1.len() > 255).unwrap();
    let long_name = names_in(&m.docs())
        .into_iter()
        .find(|n| n.starts_with("xxx"))
        .unwrap();
    assert!(long_name.len() <= 255, "{}", long_name.len());
    assert!(
        long_name.ends_with(&format!(".{}.fastq.gz", long.0)),
        "{long_name}"
    );

    let expected: BTreeSet<String> = [
        format!("report.{}.pdf", id("report.pdf", 300_000)),
        format!("report.{}.pdf", id("report.pdf", 1_000)),
        "Röö's report.pdf".into(),
        "andy's report.pdf".into(),
        "empty.bin".into(),
        "sizeless.fastq".into(),
        long_name.clone(),
        "runs_2024 summary.txt".into(),
    ]
    .into();
    assert_eq!(names_in(&m.docs()), expected);
    // Every document is also reachable by its id, as the same file.
    for (id, _, _) in &listed {
        let by_id = std::fs::metadata(m.docs().join(".by-id").join(id)).unwrap();
        assert_eq!(by_id.nlink(), 2, "{id}");
    }
    let by_id = std::fs::metadata(m.docs().join(".by-id").join(id("report.pdf", 1_000))).unwrap();
    let by_name = std::fs::metadata(
        m.docs()
            .join(format!("report.{}.pdf", id("report.pdf", 1_000))),
    )
    .unwrap();
    assert_eq!((by_id.ino(), by_id.len()), (by_name.ino(), 1_000));

    let sizes = [
        (format!("report.{}.pdf", id("report.pdf", 300_000)), 300_000),
        (format!("report.{}.pdf", id("report.pdf", 1_000)), 1_000),
        ("Röö's report.pdf".into(), 70_000),
        ("andy's report.pdf".into(), 65_536),
        ("empty.bin".into(), 0),
        (long_name, 5_000),
        ("runs_2024 summary.txt".into(), 10),
    ];
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    for (name, size) in sizes {
        let meta = std::fs::metadata(m.docs().join(&name)).unwrap();
        assert_eq!(meta.len(), size, "{name}");
        assert_eq!(meta.mode() & 0o7777, 0o444, "{name}");
        assert_eq!(meta.uid(), uid);
    }
    let dir_meta = std::fs::metadata(m.docs()).unwrap();
    assert_eq!(dir_meta.mode() & 0o7777, 0o555);
    // created_at becomes the mtime.
    let src_mtime = std::fs::metadata(docs.join("andy's report.pdf"))
        .unwrap()
        .mtime();
    assert_eq!(
        std::fs::metadata(m.docs().join("andy's report.pdf"))
            .unwrap()
            .mtime(),
        src_mtime
    );
    assert_eq!(emu.posts_total(), 0, "listing and stat never POST");
}

#[test]
fn cp_and_cat_give_byte_identical_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (docs, emu, m) = tricky_mount(tmp.path());
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();

    let by_content: std::collections::HashMap<String, String> = walk(&docs)
        .into_iter()
        .map(|p| (sha256(&std::fs::read(&p).unwrap()), p.display().to_string()))
        .collect();
    let files = names_in(&m.docs());
    assert_eq!(files.len(), 8);
    for name in &files {
        let src = m.docs().join(name);
        let copy = out.join("copy");
        let status = Command::new("cp").arg(&src).arg(&copy).status().unwrap();
        assert!(status.success(), "cp {name}");
        let copied = sha256(&std::fs::read(&copy).unwrap());
        assert!(
            by_content.contains_key(&copied),
            "cp of {name} matches no source file"
        );
        let cat = Command::new("cat").arg(&src).output().unwrap();
        assert!(cat.status.success());
        assert_eq!(sha256(&cat.stdout), copied, "cat and cp of {name} differ");
        assert_eq!(sha256sum(&src), copied, "sha256sum of {name}");
    }
    // The null-size document reads in full and then stats with its size.
    let sizeless = std::fs::read(m.docs().join("sizeless.fastq")).unwrap();
    assert_eq!(
        sizeless,
        std::fs::read(docs.join("sizeless.fastq")).unwrap()
    );
    assert_eq!(
        std::fs::metadata(m.docs().join("sizeless.fastq"))
            .unwrap()
            .len(),
        (2 * MIB + 123) as u64
    );
    assert_eq!(std::fs::read(m.docs().join("empty.bin")).unwrap(), b"");
    assert_eq!(
        emu.stats()["storage_requests_with_credentials"],
        0,
        "API credentials reached storage"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p))
        } else {
            out.push(p)
        }
    }
    out
}

#[test]
fn eight_concurrent_readers_and_ten_opens_cost_one_post() {
    let data = pattern(24 * MIB, 11);
    let (_tmp, emu, mnt) = one_document("reads.fastq", &data);
    let m = MountProc::start(&emu, &mnt, &[]);
    let file = m.docs().join("reads.fastq");
    let id = emu.id_of("reads.fastq");
    let want = sha256(&data);

    // Eight readers at once, as separate processes: all share one POST.
    let procs: Vec<_> = (0..8)
        .map(|_| {
            Command::new("sha256sum")
                .arg(&file)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for p in procs {
        let out = p.wait_with_output().unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).starts_with(&want));
    }
    // Eight threads opening at the same moment.
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let (file, barrier) = (file.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut f = std::fs::File::open(&file).unwrap();
                let mut buf = vec![0; MIB];
                f.seek(SeekFrom::Start((i * 3 * MIB) as u64)).unwrap();
                f.read_exact(&mut buf).unwrap();
                buf
            })
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        assert!(
            t.join().unwrap() == data[i * 3 * MIB..i * 3 * MIB + MIB],
            "thread {i} bytes"
        );
    }
    // Ten sequential opens.
    for _ in 0..10 {
        let out = Command::new("cat").arg(&file).output().unwrap();
        assert!(out.stdout == data);
    }
    assert_eq!(emu.posts(&id), 1, "POSTs for {id}");
}

#[test]
fn an_expired_url_costs_exactly_one_more_post_and_reads_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    let data = pattern(64 * MIB, 21);
    write(&docs, "big.fastq", &data);
    // URLs really last 2 s although the API announces an hour: storage
    // refuses them "early", as real storage may.
    let emu = EmulatorProc::start(&docs, &["--url-ttl", "2"]);
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let m = MountProc::start(&emu, &mnt, &[]);
    let id = emu.id_of("big.fastq");
    let file = m.docs().join("big.fastq");

    let mut f = std::fs::File::open(&file).unwrap();
    let mut head = vec![0; MIB];
    f.read_exact(&mut head).unwrap();
    assert!(head == data[..MIB]);
    assert_eq!(emu.posts(&id), 1);
    std::thread::sleep(Duration::from_millis(3_000));

    // Four readers of regions never read before, at once.
    let regions = [32, 40, 48, 56];
    let threads: Vec<_> = regions
        .iter()
        .map(|&mib| {
            let file = file.clone();
            std::thread::spawn(move || {
                let mut f = std::fs::File::open(&file).unwrap();
                f.seek(SeekFrom::Start((mib * MIB) as u64)).unwrap();
                let mut buf = vec![0; MIB];
                f.read_exact(&mut buf).unwrap();
                buf
            })
        })
        .collect();
    for (t, mib) in threads.into_iter().zip(regions) {
        assert!(
            t.join().unwrap() == data[mib * MIB..(mib + 1) * MIB],
            "bytes at {mib} MiB"
        );
    }
    // And the handle opened before expiry reads on too.
    f.seek(SeekFrom::Start(60 * MIB as u64)).unwrap();
    let mut tail = vec![0; MIB];
    f.read_exact(&mut tail).unwrap();
    assert!(tail == data[60 * MIB..61 * MIB]);

    let stats = emu.stats();
    assert!(
        stats["expired_403"].as_u64().unwrap() >= 1,
        "storage never refused the URL: {stats}"
    );
    assert_eq!(emu.posts(&id), 2, "one POST, then exactly one after expiry");
}

#[test]
fn a_bad_key_exits_nonzero_and_mounts_nothing() {
    require_fuse();
    let (_tmp, emu, mnt) = one_document("a.txt", b"a");
    for foreground in [false, true] {
        let mut cmd = Command::new(bin());
        cmd.arg("mount").arg(&mnt).args([
            "--api-base",
            &emu.url,
            "--api-key",
            "wrongwrongwrongwrongwrongwrong00",
        ]);
        if foreground {
            cmd.arg("--foreground");
        }
        let out = cmd
            .env_remove("ONE_CODEX_API_KEY")
            .env_remove("ONE_CODEX_BEARER_TOKEN")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains("API key was rejected"), "{stderr}");
        assert!(
            !stderr.contains("wrongwrong"),
            "the key was printed: {stderr}"
        );
        // The warning about a key on the command line, then one error.
        let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("ocxfs:")).collect();
        assert_eq!(lines.len(), 2, "{stderr}");
        assert!(lines[0].contains("visible to other users"), "{stderr}");
        assert!(!is_mounted(&mnt));
    }
    assert_eq!(emu.posts_total(), 0);
}

#[test]
fn bad_mount_points_and_unreachable_servers_are_clear_errors() {
    require_fuse();
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    let file = write(&docs, "a.txt", b"a");
    let emu = EmulatorProc::start(&docs, &[]);
    let run = |dir: &Path, base: &str| {
        let out = Command::new(bin())
            .arg("mount")
            .arg(dir)
            .args(["--api-base", base])
            .env("ONE_CODEX_API_KEY", KEY)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(run(&tmp.path().join("missing"), &emu.url).contains("does not exist"));
    assert!(run(&file, &emu.url).contains("not a directory"));
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    assert!(run(&mnt, "http://127.0.0.1:9").contains("cannot reach"));
    assert!(!is_mounted(&mnt));
    let no_key = Command::new(bin())
        .arg("mount")
        .arg(&mnt)
        .args(["--api-base", &emu.url])
        .env_remove("ONE_CODEX_API_KEY")
        .env_remove("ONE_CODEX_BEARER_TOKEN")
        .env("HOME", tmp.path())
        .output()
        .unwrap();
    assert!(!no_key.status.success());
    assert!(String::from_utf8_lossy(&no_key.stderr).contains("no API key"));
}

#[test]
fn writes_creates_renames_and_deletes_fail_with_erofs() {
    let (_tmp, emu, mnt) = one_document("a.txt", b"hello");
    let m = MountProc::start(&emu, &mnt, &[]);
    let a = m.docs().join("a.txt");
    let erofs =
        |r: std::io::Result<()>| assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EROFS));
    erofs(std::fs::OpenOptions::new().write(true).open(&a).map(drop));
    erofs(std::fs::OpenOptions::new().append(true).open(&a).map(drop));
    erofs(std::fs::File::create(m.docs().join("new.txt")).map(drop));
    erofs(std::fs::remove_file(&a));
    erofs(std::fs::rename(&a, m.docs().join("b.txt")));
    erofs(std::fs::create_dir(m.docs().join("d")));
    erofs(std::fs::set_permissions(
        &a,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    ));
    let sh = Command::new("sh")
        .arg("-c")
        .arg(format!("echo x > '{}'", a.display()))
        .output()
        .unwrap();
    assert!(!sh.status.success());
    assert_eq!(std::fs::read(&a).unwrap(), b"hello", "nothing changed");
    assert_eq!(emu.posts_total(), 1, "only the read opened the file");
}

/// getxattr(2) through the kernel, with a buffer of `size` bytes: the
/// value's length, or the errno.
fn getxattr(path: &Path, name: &str, size: usize) -> Result<usize, i32> {
    let path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let name = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; size];
    // SAFETY: NUL-terminated strings and a buffer of `size` bytes.
    let n = unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), size) };
    if n < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap())
    } else {
        Ok(n as usize)
    }
}

#[test]
fn xattr_failures_reach_callers_as_their_errnos() {
    let (_tmp, emu, mnt) = one_document("a.txt", b"hello");
    let m = MountProc::start(&emu, &mnt, &[]);
    let a = m.docs().join("a.txt");
    let id_len = getxattr(&a, "user.onecodex.id", 0).expect("the id's length");
    assert_eq!(getxattr(&a, "user.onecodex.id", 256), Ok(id_len));
    assert_eq!(getxattr(&a, "user.onecodex.id", 1), Err(libc::ERANGE));
    assert_eq!(getxattr(&a, "user.onecodex.nope", 256), Err(libc::ENODATA));
    assert_eq!(getxattr(&a, "security.selinux", 256), Err(libc::ENOTSUP));
    assert_eq!(emu.posts_total(), 0, "xattrs never POST");
}

#[test]
fn sigterm_unmounts_even_with_a_file_open() {
    let (_tmp, emu, mnt) = one_document("a.bin", &pattern(4 * MIB, 3));
    let mut m = MountProc::start(&emu, &mnt, &[]);
    let mut open = std::fs::File::open(m.docs().join("a.bin")).unwrap();
    let mut buf = vec![0; 1000];
    open.read_exact(&mut buf).unwrap();
    let status = m.terminate();
    assert!(status.success(), "{status}");
    assert!(!is_mounted(&mnt), "the mount outlived SIGTERM");
    drop(open);

    // SIGINT too, with nothing open.
    let mut m = MountProc::start(&emu, &mnt, &[]);
    // SAFETY: plain kill(2) on our child.
    unsafe { libc::kill(m.pid(), libc::SIGINT) };
    eventually("the mount to go", || !is_mounted(&mnt));
    let _ = m.terminate();
}

#[test]
fn the_daemon_returns_once_mounted_and_unmount_stops_it() {
    require_fuse();
    let (tmp, emu, mnt) = one_document("hello.txt", b"hello world\n");
    let log = tmp.path().join("ocxfs.log");
    let out = Command::new(bin())
        .arg("mount")
        .arg(&mnt)
        .args([
            "--api-base",
            &emu.url,
            "--api-key",
            KEY,
            "--log-file",
            log.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    // Clean up whatever happens below.
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            if is_mounted(self.0) {
                let _ = Command::new("fusermount3")
                    .args(["-u", "-z"])
                    .arg(self.0)
                    .status();
            }
        }
    }
    let _guard = Unmount(&mnt);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Ready means ready: no waiting before the first read.
    assert_eq!(
        std::fs::read_to_string(mnt.join("documents/hello.txt")).unwrap(),
        "hello world\n"
    );
    let daemon = daemon_pid(&mnt).expect("a daemon process serves the mount");
    let cmdline = std::fs::read(format!("/proc/{daemon}/cmdline")).unwrap();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains(KEY),
        "the key is visible in ps"
    );
    // Through a symbolic link to its parent, as macOS's /tmp is one: the
    // mount table names the resolved path.
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(mnt.parent().unwrap(), &link).unwrap();
    let un = Command::new(bin())
        .arg("unmount")
        .arg(link.join(mnt.file_name().unwrap()))
        .status()
        .unwrap();
    assert!(un.success());
    assert!(!is_mounted(&mnt));
    eventually("the daemon to exit", || {
        !Path::new(&format!("/proc/{daemon}")).exists() || is_zombie(daemon)
    });
    // Once more: the directory is no longer a mount point, and `ocxfs
    // unmount` says so instead of failing obscurely.
    let again = Command::new(bin())
        .arg("unmount")
        .arg(&mnt)
        .output()
        .unwrap();
    assert!(!again.status.success());
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("is not mounted"), "{said}");
}

fn daemon_pid(mnt: &Path) -> Option<i32> {
    let needle = mnt.to_str().unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    let c = String::from_utf8_lossy(&c).replace('\0', " ");
                    c.contains(needle) && c.contains("--ready-fd")
                })
                .unwrap_or(false)
        })
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.split(' ').nth(2) == Some("Z"))
}

#[test]
fn names_are_stable_whatever_the_listing_order_and_all_pages_are_read() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    // 2,345 documents: three pages of 1,000, with many shared names.
    for i in 0..2345 {
        write(
            &docs,
            &format!("d{}/sample_{}.fastq", i % 7, i / 7),
            format!("{i}\n").as_bytes(),
        );
    }
    let names_with_seed = |seed: &str| {
        let emu = EmulatorProc::start(&docs, &["--shuffle-seed", seed]);
        let mnt = tmp.path().join(format!("mnt{seed}"));
        std::fs::create_dir(&mnt).unwrap();
        let m = MountProc::start(&emu, &mnt, &[]);
        let names = names_in(&m.docs());
        let stats = emu.stats();
        assert!(
            stats["api_requests"]["list_documents"].as_u64().unwrap() >= 3,
            "{stats}"
        );
        names
    };
    let first = names_with_seed("1");
    assert_eq!(first.len(), 2345);
    assert_eq!(first, names_with_seed("2"));
    assert!(
        first
            .iter()
            .all(|n| n.len() <= 255 && n.ends_with(".fastq"))
    );
}

#[test]
fn sizes_are_read_in_binary_units_with_decimals() {
    let (_tmp, emu, mnt) = one_document("hello.txt", b"hello world\n");
    let m = MountProc::start(&emu, &mnt, &["--max-memory", "1.5G"]);
    assert_eq!(m.stats()["memory"]["budget"], 3u64 << 29);
    drop(m);
    let out = Command::new(bin())
        .arg("mount")
        .arg(&mnt)
        .args([
            "--foreground",
            "--api-base",
            &emu.url,
            "--max-memory",
            "1.5Q",
        ])
        .env("ONE_CODEX_API_KEY", KEY)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a size: \"1.5Q\""), "{err}");
    assert!(!is_mounted(&mnt));
}

/// A detached `ocxfs mount` of `emu` on `mnt` with `extra` options, the
/// key in the environment; the mount is unmounted when the guard drops.
fn mount_detached(emu: &EmulatorProc, mnt: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(bin())
        .arg("mount")
        .arg(mnt)
        .args(["--api-base", &emu.url])
        .args(extra)
        .env("ONE_CODEX_API_KEY", KEY)
        .env_remove("OCXFS_API_KEY")
        .env_remove("RUST_LOG")
        .env("XDG_STATE_HOME", state_home(mnt))
        .output()
        .unwrap()
}

/// Unmounts `0` when dropped, whatever the test did.
struct Unmounted<'a>(&'a Path);

impl Drop for Unmounted<'_> {
    fn drop(&mut self) {
        if is_mounted(self.0) {
            let _ = Command::new(bin()).arg("unmount").arg(self.0).status();
        }
    }
}

#[test]
fn a_detached_daemon_logs_at_the_given_level_to_a_file_only_its_user_reads() {
    use std::os::unix::fs::PermissionsExt;
    require_fuse();
    let (_tmp, emu, mnt) = one_document("hello.txt", b"hello world\n");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;

    // The default log, created by this mount.
    let guard = Unmounted(&mnt);
    let out = mount_detached(&emu, &mnt, &["--log-level", "debug"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(is_mounted(&mnt));
    let log_dir = state_home(&mnt).join("ocxfs");
    let log = log_dir.join("ocxfs.log");
    drop(guard);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("DEBUG") && text.contains("using credentials"),
        "--log-level debug did not reach the daemon:\n{text}"
    );
    assert_eq!(mode(&log), 0o600);
    assert_eq!(mode(&log_dir), 0o700);

    // A log file that exists already, readable by others, and no level:
    // the default (info) applies and the file is made private.
    let own = mnt.parent().unwrap().join("own.log");
    std::fs::write(&own, "").unwrap();
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o644)).unwrap();
    let guard = Unmounted(&mnt);
    let out = mount_detached(&emu, &mnt, &["--log-file", own.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(guard);
    assert_eq!(mode(&own), 0o600);
    let text = std::fs::read_to_string(&own).unwrap();
    assert!(text.contains("mounted"), "{text}");
    assert!(!text.contains("DEBUG"), "{text}");
}

#[test]
fn an_api_key_on_the_command_line_is_in_no_process_arguments() {
    require_fuse();
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    // An API that accepts connections and never answers: the parent waits.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let api = format!("http://{}", silent.local_addr().unwrap());
    let parent = Command::new(bin())
        .arg("mount")
        .arg(&mnt)
        .args(["--api-base", &api, "--api-key", KEY])
        .args(["--log-file", tmp.path().join("log").to_str().unwrap()])
        .env_remove("OCXFS_API_KEY")
        .env("XDG_STATE_HOME", tmp.path().join("state"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut daemon = None;
    eventually("the daemon to start", || {
        daemon = daemon_pid(&mnt);
        daemon.is_some()
    });
    let daemon = daemon.unwrap();
    let cmdline = |pid: u32| {
        String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap())
            .replace('\0', " ")
    };
    let waiting = cmdline(parent.id());
    let serving = cmdline(daemon as u32);
    // SAFETY: plain kill(2) of the daemon this test started.
    unsafe { libc::kill(daemon, libc::SIGKILL) };
    let out = parent.wait_with_output().unwrap();
    assert!(waiting.contains(" mount "), "{waiting}");
    assert!(
        !waiting.contains(KEY),
        "the waiting parent shows the key: {waiting}"
    );
    assert!(
        !serving.contains(KEY),
        "the daemon shows the key: {serving}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("visible to other users"), "{err}");
    assert!(err.contains("--api-key-file"), "{err}");
    assert!(!out.status.success());
    assert!(!is_mounted(&mnt));
    drop(silent);
}
