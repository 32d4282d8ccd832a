//! The conventions of mount tools (rclone, s3fs, mountpoint-s3): owner and
//! mode options, `-o` lists, who may read the mount, non-empty mount points
//! refused, and `df` on the mount.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use common::*;

/// `cat` of `path` as the unprivileged user `nobody`: whether it worked.
fn nobody_can_read(path: &Path) -> bool {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
        .arg(path)
        .output()
        .expect("run setpriv (util-linux)")
        .status
        .success()
}

#[test]
fn uid_gid_and_umask_come_through_dash_o() {
    let (_tmp, emu, mnt) = one_document("a.txt", b"owned\n");
    let m = MountProc::start(
        &emu,
        &mnt,
        &["-o", "uid=1234,gid=5678,umask=027", "-oallow_other"],
    );
    let file = std::fs::metadata(m.docs().join("a.txt")).unwrap();
    assert_eq!((file.uid(), file.gid()), (1234, 5678));
    assert_eq!(file.mode() & 0o7777, 0o440);
    let dir = std::fs::metadata(m.docs()).unwrap();
    assert_eq!((dir.uid(), dir.gid()), (1234, 5678));
    assert_eq!(dir.mode() & 0o7777, 0o550);
    // Others have no bits left: the kernel refuses them (allow_other lets
    // them reach the mount at all).
    assert!(!nobody_can_read(&m.docs().join("a.txt")));
}

#[test]
fn allow_other_lets_others_read_and_allow_root_does_not() {
    let (_tmp, emu, mnt) = one_document("a.txt", b"shared\n");
    let m = MountProc::start(&emu, &mnt, &["--allow-other"]);
    assert!(nobody_can_read(&m.docs().join("a.txt")));
    drop(m);
    let m = MountProc::start(&emu, &mnt, &["--allow-root"]);
    // The owner (root here) reads; anyone else is turned away.
    assert_eq!(std::fs::read(m.docs().join("a.txt")).unwrap(), b"shared\n");
    assert!(!nobody_can_read(&m.docs().join("a.txt")));
}

#[test]
fn a_non_empty_mount_point_is_refused_unless_allowed() {
    let (_tmp, emu, mnt) = one_document("a.txt", b"over files\n");
    std::fs::write(mnt.join("mine.txt"), b"hidden while mounted").unwrap();
    let out = mount_command(&emu.url, &mnt, &[]).output().unwrap();
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!(
            "ocxfs: mount point {} is not empty (its files would be hidden): pass \
             --allow-non-empty to mount over them\n",
            mnt.canonicalize().unwrap().display()
        )
    );
    assert!(!is_mounted(&mnt));
    assert_eq!(emu.posts_total(), 0);
    let m = MountProc::start(&emu, &mnt, &["--allow-non-empty"]);
    assert_eq!(
        std::fs::read(m.docs().join("a.txt")).unwrap(),
        b"over files\n"
    );
    drop(m);
    assert_eq!(
        std::fs::read(mnt.join("mine.txt")).unwrap(),
        b"hidden while mounted"
    );
}

#[test]
fn df_shows_the_listed_bytes_and_the_file_count() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    write(&docs, "a.bin", &pattern(3_000_000, 1));
    write(&docs, "b/c.bin", &pattern(1_234_567, 2));
    let emu = EmulatorProc::start(&docs, &[]);
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let m = MountProc::start(&emu, &mnt, &[]);
    let out = run_ok(
        Command::new("df")
            .args(["-B1", "--output=used,itotal"])
            .arg(&m.dir),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let numbers: Vec<u64> = text
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    // The bytes in 4 KiB units, rounded up.
    assert_eq!(numbers[0], (3_000_000u64 + 1_234_567).div_ceil(4096) * 4096);
    // Every file and directory of the mount, each inode once (`.by-id`
    // links files that are also elsewhere).
    let found = run_ok(Command::new("find").arg(&m.dir).args(["-printf", "%i\n"]));
    let inodes: std::collections::BTreeSet<String> = String::from_utf8(found.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(numbers[1], inodes.len() as u64, "df -i against find");
}
