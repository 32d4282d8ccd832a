//! The limits on POSTs a single mount keeps, through a real mount: the
//! documents' own terms (`downloads_remaining`, `valid_until`, served and
//! enforced by the emulator) and `--max-posts` across a remount.

// Mounted through fusermount3 and checked through /proc: Linux only
// (scripts/check-platforms type-checks the rest for macOS and FreeBSD).
#![cfg(target_os = "linux")]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn getfattr(file: &Path, name: &str) -> String {
    let out = run_ok(
        Command::new("getfattr")
            .args(["--only-values", "-n", name])
            .arg(file),
    );
    String::from_utf8(out.stdout).unwrap()
}

fn open_errno(file: &Path) -> Option<i32> {
    std::fs::read(file).err().and_then(|e| e.raw_os_error())
}

#[test]
fn documents_past_their_terms_fail_at_once_without_a_post() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    for name in ["zero.txt", "old.txt", "two.txt", "free.txt"] {
        write(&docs, name, &pattern(50_000, name.len() as u64));
    }
    let manifest = tmp.path().join("manifest.json");
    let entries = serde_json::json!([
        {"path": "zero.txt", "downloads_remaining": 0},
        {"path": "old.txt", "downloads_remaining": 5, "valid_until": "2020-01-01T00:00:00+00:00"},
        {"path": "two.txt", "downloads_remaining": 2},
    ]);
    std::fs::write(&manifest, entries.to_string()).unwrap();
    let emu = EmulatorProc::start(&docs, &["--manifest", manifest.to_str().unwrap()]);
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let log = tmp.path().join("mount.log");
    let m = MountProc::start_logged(&emu, &mnt, &[], Some(&log));
    let d = m.docs();

    assert_eq!(
        getfattr(&d.join("zero.txt"), "user.onecodex.downloads_remaining"),
        "0"
    );
    assert_eq!(
        getfattr(&d.join("two.txt"), "user.onecodex.downloads_remaining"),
        "2"
    );
    assert_eq!(
        getfattr(&d.join("old.txt"), "user.onecodex.valid_until"),
        "2020-01-01T00:00:00+00:00"
    );
    assert_eq!(
        getfattr(&d.join("zero.txt"), "user.ocxfs.post_needed"),
        "refused: documents/".to_owned()
            + &emu.id_of("zero.txt")
            + " cannot be downloaded: downloads_remaining is 0"
    );
    assert!(getfattr(&d.join("old.txt"), "user.ocxfs.post_needed").contains("valid_until"));
    assert_eq!(
        getfattr(&d.join("free.txt"), "user.ocxfs.post_needed"),
        "yes"
    );

    // prefetch says what the POSTs cost in downloads before it reads.
    let out = Command::new(bin())
        .args(["prefetch", "--yes"])
        .arg(&d)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("they use 1 of the 2 downloads those documents have left"),
        "{said}"
    );
    assert!(said.contains("zero.txt will fail without a POST"), "{said}");
    // The two refused documents failed; the others were read.
    assert!(!out.status.success());
    assert_eq!(open_errno(&d.join("zero.txt")), Some(libc::EACCES));
    assert_eq!(open_errno(&d.join("old.txt")), Some(libc::EACCES));
    assert_eq!(
        std::fs::read(d.join("two.txt")).unwrap(),
        pattern(50_000, 7)
    );
    assert_eq!(emu.posts(&emu.id_of("zero.txt")), 0);
    assert_eq!(emu.posts(&emu.id_of("old.txt")), 0);
    assert_eq!(emu.posts_total(), 2);
    // One log line per refused open (prefetch, then the two opens above).
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("not POSTing").count(), 4, "{text}");
}

#[test]
fn a_budget_of_n_makes_n_posts_then_edquot_also_after_a_remount() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    for i in 0..4 {
        write(&docs, &format!("d{i}.bin"), &pattern(40_000, i));
    }
    let emu = EmulatorProc::start(&docs, &[]);
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mut m = MountProc::start(&emu, &mnt, &["--max-posts", "2/day"]);
    let d = m.docs();
    for i in 0..2 {
        assert_eq!(
            std::fs::read(d.join(format!("d{i}.bin"))).unwrap(),
            pattern(40_000, i)
        );
    }
    assert_eq!(open_errno(&d.join("d2.bin")), Some(libc::EDQUOT));
    assert_eq!(
        getfattr(&d.join("d3.bin"), "user.ocxfs.post_needed"),
        "refused: the POST budget of 2/day is spent"
    );
    // A file whose URL is cached stays readable.
    drop_page_cache(&d.join("d0.bin"));
    assert_eq!(std::fs::read(d.join("d0.bin")).unwrap(), pattern(40_000, 0));
    let stats =
        String::from_utf8(run_ok(Command::new(bin()).arg("stats").arg(&mnt)).stdout).unwrap();
    assert!(stats.contains("2 used, 0 left of 2/day"), "{stats}");
    assert!(m.terminate().success());

    // The count is kept in the state directory: a remount is still spent.
    let m = MountProc::start(&emu, &mnt, &["--max-posts", "2/day", "--no-persist-urls"]);
    assert_eq!(open_errno(&m.docs().join("d3.bin")), Some(libc::EDQUOT));
    assert_eq!(emu.posts_total(), 2);
    let state = state_home(&mnt).join("ocxfs/posts");
    for entry in std::fs::read_dir(state).unwrap() {
        use std::os::unix::fs::PermissionsExt;
        let mode = entry.unwrap().metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
