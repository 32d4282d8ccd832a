//! The filesystem's operations driven directly, without FUSE: lookup,
//! getattr, readdir, open, read, xattrs and release on `OcxFs` as
//! `mount::build_fs` wires it, against an emulator in this process. The
//! mounted suites keep what only a kernel shows.

mod common;

use std::path::Path;

use common::unmounted::UnmountedFs;
use ocxfs::catalog::{BY_ID_DIR, CONTROL_DIR, DOCUMENTS_DIR, ROOT_INO, SAMPLES_DIR, STATS_FILE};
use ocxfs::fs::{Kind, POST_NEEDED_XATTR};

/// Several blocks and a ragged end, so reads cross block boundaries.
const BIG_LEN: usize = (5 << 20) + 777;
const SMALL: &[u8] = b"ACGT\nTTGA\n";

fn write_docs(dir: &Path) -> Vec<u8> {
    let big = common::pattern(BIG_LEN, 11);
    std::fs::write(dir.join("reads.fastq"), &big).unwrap();
    std::fs::write(dir.join("small.txt"), SMALL).unwrap();
    big
}

async fn start() -> (tempfile::TempDir, Vec<u8>, UnmountedFs) {
    let dir = tempfile::tempdir().unwrap();
    let big = write_docs(dir.path());
    let t = UnmountedFs::start(dir.path()).await;
    (dir, big, t)
}

fn doc(name: &str) -> String {
    format!("{DOCUMENTS_DIR}/{name}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_getattr_and_readdir_show_the_listing_without_a_post() {
    let (_dir, big, t) = start().await;

    let root = t.fs.getattr(ROOT_INO).unwrap();
    assert_eq!((root.kind, root.perm), (Kind::Dir, 0o555));
    let names: Vec<String> = t
        .readdir_all(ROOT_INO, false, 100)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(
        names,
        [".", "..", CONTROL_DIR, DOCUMENTS_DIR, SAMPLES_DIR],
        "root entries"
    );

    let reads = t.lookup_path(&doc("reads.fastq")).unwrap();
    assert_eq!(reads.kind, Kind::File);
    assert_eq!(reads.size, big.len() as u64);
    assert_eq!(reads.perm, 0o444);
    assert!(!reads.size_unknown);
    let (uid, gid) = ocxfs::mount::current_owner();
    assert_eq!((reads.uid, reads.gid), (uid, gid));
    assert_eq!(t.fs.getattr(reads.ino).unwrap(), reads);
    let small = t.lookup_path(&doc("small.txt")).unwrap();
    assert_eq!(small.size, SMALL.len() as u64);

    // The same file by its id is the same inode (one download, one POST).
    let id = t.xattr(reads.ino, "user.onecodex.id").expect("an id xattr");
    let by_id = t
        .lookup_path(&format!("{DOCUMENTS_DIR}/{BY_ID_DIR}/{id}"))
        .unwrap();
    assert_eq!(by_id.ino, reads.ino);
    assert_eq!(
        t.xattr(reads.ino, "user.onecodex.uri").as_deref(),
        Some(format!("/api/v1/documents/{id}").as_str())
    );

    // READDIRPLUS hands out what lookup says; small buffers resume at the
    // right entry and see the same directory.
    let docs = t.lookup_path(DOCUMENTS_DIR).unwrap();
    let plus = t.readdir_all(docs.ino, true, 100).unwrap();
    let names: Vec<&str> = plus.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, [".", "..", BY_ID_DIR, "reads.fastq", "small.txt"]);
    for e in plus.iter().skip(2) {
        assert_eq!(
            e.attr.as_ref(),
            Some(&t.fs.lookup(docs.ino, &e.name).unwrap())
        );
    }
    assert_eq!(plus[0].ino, docs.ino);
    assert_eq!(plus[1].ino, ROOT_INO);
    let one_by_one = t.readdir_all(docs.ino, true, 1).unwrap();
    assert_eq!(one_by_one, plus);

    // What is not there.
    let missing = t.lookup_path(&doc("nope.fastq")).unwrap_err();
    assert_eq!(missing.errno(), libc::ENOENT);
    assert_eq!(t.fs.getattr(999_999).unwrap_err().errno(), libc::ENOENT);
    let not_a_dir = t.readdir_all(reads.ino, false, 10).unwrap_err();
    assert_eq!(not_a_dir.errno(), libc::ENOENT);

    assert_eq!(t.posts(), 0, "metadata never POSTs");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xattrs_come_from_the_listing_and_say_whether_a_read_would_post() {
    let (_dir, _big, t) = start().await;
    let small = t.lookup_path(&doc("small.txt")).unwrap();

    let names: Vec<String> =
        t.fs.xattrs(small.ino)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
    assert!(names.iter().all(|n| n.starts_with("user.")), "{names:?}");
    assert!(names.contains(&"user.onecodex.id".to_owned()), "{names:?}");
    assert_eq!(
        names.iter().filter(|n| *n == POST_NEEDED_XATTR).count(),
        1,
        "{names:?}"
    );
    assert_eq!(
        t.xattr(small.ino, POST_NEEDED_XATTR).as_deref(),
        Some("yes")
    );
    // Missing ones: an unknown name, any other namespace, a directory's.
    assert_eq!(t.xattr(small.ino, "user.onecodex.no_such_thing"), None);
    assert_eq!(t.xattr(small.ino, "security.selinux"), None);
    // As getxattr(2) answers: missing, and another namespace unsupported.
    let errno = |name: &str| t.fs.xattr(small.ino, name.as_ref()).unwrap_err().errno();
    // ENODATA on Linux, ENOATTR on macOS and FreeBSD.
    assert_eq!(
        errno("user.onecodex.no_such_thing"),
        ocxfs::platform::NO_ATTRIBUTE
    );
    #[cfg(not(target_os = "macos"))]
    assert_eq!(errno("security.selinux"), libc::ENOTSUP);
    // macOS names have no namespaces: Finder's queries are simply missing.
    #[cfg(target_os = "macos")]
    assert_eq!(errno("com.apple.FinderInfo"), ocxfs::platform::NO_ATTRIBUTE);
    assert_eq!(
        t.fs.xattr(small.ino, "user.onecodex.id".as_ref()).ok(),
        t.xattr(small.ino, "user.onecodex.id")
    );
    let docs = t.lookup_path(DOCUMENTS_DIR).unwrap();
    assert_eq!(t.fs.xattrs(docs.ino).unwrap(), Vec::new());
    assert_eq!(t.fs.xattrs(999_999).unwrap_err().errno(), libc::ENOENT);
    assert_eq!(t.posts(), 0, "asking about xattrs never POSTs");

    let opened =
        t.fs.open(small.ino, libc::O_RDONLY, &t.ticket())
            .await
            .unwrap();
    assert_eq!(t.posts(), 1);
    assert_eq!(t.xattr(small.ino, POST_NEEDED_XATTR).as_deref(), Some("no"));
    t.fs.release(opened.fh).unwrap();
    // The URL outlives the handle: reading again would not POST.
    assert_eq!(t.xattr(small.ino, POST_NEEDED_XATTR).as_deref(), Some("no"));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_read_release_serve_every_byte_for_one_post() {
    let (_dir, big, t) = start().await;
    let reads = t.lookup_path(&doc("reads.fastq")).unwrap();
    let id = t.xattr(reads.ino, "user.onecodex.id").unwrap();

    let first =
        t.fs.open(reads.ino, libc::O_RDONLY, &t.ticket())
            .await
            .unwrap();
    assert!(
        !first.direct_io,
        "a file of known size goes through the page cache"
    );
    assert!(first.keep_cache);
    assert_eq!(t.posts(), 1, "opening POSTs once");

    let all = t.read_to_end(first.fh, 0, 128 << 10).await;
    assert_eq!(all.len(), big.len());
    assert!(all == big, "sequential reads differ from the file");

    // A second handle on the same file, reading at ragged offsets.
    let second =
        t.fs.open(reads.ino, libc::O_RDONLY, &t.ticket())
            .await
            .unwrap();
    assert_ne!(second.fh, first.fh);
    for (offset, size) in [(1_048_575u64, 3u32), (3_000_001, 1 << 20), (12, 70_000)] {
        let data =
            t.fs.read(second.fh, offset, size, &t.ticket())
                .await
                .unwrap();
        let got: Vec<u8> = data.0.iter().flat_map(|b| b.iter().copied()).collect();
        let at = offset as usize;
        assert!(
            got == big[at..at + size as usize],
            "read of {size} at {offset}"
        );
    }
    let tail = t.read_to_end(second.fh, big.len() as u64 - 100, 4096).await;
    assert!(tail == big[big.len() - 100..]);
    let past =
        t.fs.read(second.fh, big.len() as u64 + 10, 4096, &t.ticket())
            .await
            .unwrap();
    assert!(past.is_empty(), "a read past the end is empty");

    t.fs.release(first.fh).unwrap();
    t.fs.release(second.fh).unwrap();
    // A handle released, or never given out, is a bad file descriptor.
    let released = t.fs.read(first.fh, 0, 10, &t.ticket()).await;
    assert_eq!(released.unwrap_err().errno(), libc::EBADF);
    assert_eq!(t.fs.release(first.fh).unwrap_err().errno(), libc::EBADF);
    let never = t.fs.read(u64::MAX, 0, 10, &t.ticket()).await;
    assert_eq!(never.unwrap_err().errno(), libc::EBADF);

    let emu = t.emu.stats();
    assert_eq!(emu.posts.get(&id), Some(&1), "{:?}", emu.posts);
    assert_eq!(emu.posts_total, 1);
    assert_eq!(t.fs.stats().posts, 1, "the filesystem counts the same POST");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_for_writing_are_refused_before_any_post() {
    let (_dir, _big, t) = start().await;
    let small = t.lookup_path(&doc("small.txt")).unwrap();
    for flags in [libc::O_WRONLY, libc::O_RDWR, libc::O_RDONLY | libc::O_TRUNC] {
        let e = t.fs.open(small.ino, flags, &t.ticket()).await.unwrap_err();
        assert_eq!(e.errno(), libc::EROFS, "flags {flags:#o}");
    }
    let docs = t.lookup_path(DOCUMENTS_DIR).unwrap();
    let e =
        t.fs.open(docs.ino, libc::O_RDONLY, &t.ticket())
            .await
            .unwrap_err();
    assert_eq!(e.errno(), libc::ENOENT, "a directory is not a file to open");
    assert_eq!(t.posts(), 0);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stats_file_reports_the_posts_made() {
    let (_dir, _big, t) = start().await;
    let small = t.lookup_path(&doc("small.txt")).unwrap();
    let opened =
        t.fs.open(small.ino, libc::O_RDONLY, &t.ticket())
            .await
            .unwrap();
    assert!(t.read_to_end(opened.fh, 0, 4096).await == SMALL);
    t.fs.release(opened.fh).unwrap();

    let stats = t
        .lookup_path(&format!("{CONTROL_DIR}/{STATS_FILE}"))
        .unwrap();
    assert!(stats.size_unknown, "its size is known only once generated");
    let handle =
        t.fs.open(stats.ino, libc::O_RDONLY, &t.ticket())
            .await
            .unwrap();
    assert!(handle.direct_io);
    let json: serde_json::Value =
        serde_json::from_slice(&t.read_to_end(handle.fh, 0, 1000).await).unwrap();
    t.fs.release(handle.fh).unwrap();
    assert_eq!(json["posts"], 1);
    assert_eq!(json["documents"], 2);
    assert_eq!(json["bytes_served"], SMALL.len() as u64);
    assert_eq!(t.posts(), 1, "reading the stats file makes no POST");
    t.stop().await;
}
