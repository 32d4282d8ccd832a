//! The command line around the mount: `--version`, shell completions, the
//! manual, and a detached mount's log file.

mod common;

use std::process::Command;

use common::*;

fn ocxfs(args: &[&str]) -> String {
    String::from_utf8(run_ok(Command::new(bin()).args(args)).stdout).unwrap()
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let version = ocxfs(&["--version"]);
    let head = run_ok(
        Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .current_dir(env!("CARGO_MANIFEST_DIR")),
    );
    let head = String::from_utf8(head.stdout).unwrap();
    assert_eq!(
        version,
        format!(
            "ocxfs {} (commit {})\n",
            env!("CARGO_PKG_VERSION"),
            head.trim()
        )
    );
}

#[test]
fn completions_come_from_the_real_options() {
    let bash = ocxfs(&["completions", "bash"]);
    assert!(
        bash.contains("--ca-file"),
        "bash completion lacks mount's options"
    );
    // bash itself loads it and registers the completion.
    let registered = run_ok(Command::new("bash").args([
        "-c",
        &format!("source /dev/stdin <<'EOS'\n{bash}\nEOS\ncomplete -p ocxfs"),
    ]));
    assert!(String::from_utf8_lossy(&registered.stdout).contains("-F _ocxfs ocxfs"));
    assert!(ocxfs(&["completions", "zsh"]).starts_with("#compdef ocxfs"));
    assert!(ocxfs(&["completions", "fish"]).contains("complete -c ocxfs"));
    let bad = Command::new(bin())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

#[test]
fn the_manual_lists_every_command_and_option() {
    let page = ocxfs(&["manpage"]);
    assert!(page.starts_with(".ie \\n(.g .ds Aq"), "{}", &page[..80]);
    assert!(page.contains(".TH ocxfs 1"), "no title");
    for cmd in ["mount", "unmount", "prefetch", "stats", "completions"] {
        assert!(page.contains(cmd), "{cmd} is missing");
    }
    let dir = tempfile::tempdir().unwrap();
    ocxfs(&["manpage", "--dir", dir.path().to_str().unwrap()]);
    let mount = std::fs::read_to_string(dir.path().join("ocxfs-mount.1")).unwrap();
    assert!(mount.contains("ca\\-file"), "ocxfs-mount.1 lacks --ca-file");
}

#[test]
fn a_detached_mounts_log_has_no_colour_codes() {
    require_fuse();
    let (tmp, emu, mnt) = one_document("a.txt", b"plain log\n");
    let log = tmp.path().join("ocxfs.log");
    let mut cmd = mount_command(&emu.url, &mnt, &["--log-file", log.to_str().unwrap()]);
    cmd.env("RUST_LOG", "debug");
    run_ok(&mut cmd);
    let read = std::fs::read(mnt.join("documents/a.txt"));
    run_ok(Command::new(bin()).arg("unmount").arg(&mnt));
    assert_eq!(read.unwrap(), b"plain log\n");
    eventually("the daemon to log its exit", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("unmounted from outside"))
    });
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("DEBUG"), "nothing logged at debug level");
    assert!(!text.contains('\x1b'), "colour codes in the log file");
}

#[test]
fn a_detached_mount_says_what_it_mounted_and_its_warnings() {
    require_fuse();
    let (tmp, emu, mnt) = one_document("a.txt", b"a");
    let key = tmp.path().join("key");
    std::fs::write(&key, KEY).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let log = tmp.path().join("ocxfs.log");
    let mut cmd = mount_command(
        &emu.url,
        &mnt,
        &[
            "--api-key-file",
            key.to_str().unwrap(),
            "--log-file",
            log.to_str().unwrap(),
        ],
    );
    cmd.env_remove("ONE_CODEX_API_KEY");
    let out = run_ok(&mut cmd);
    let shown = String::from_utf8(out.stderr).unwrap();
    run_ok(Command::new(bin()).arg("unmount").arg(&mnt));
    assert_eq!(
        shown,
        format!(
            "ocxfs: warning: credentials file is readable by other users; run: chmod 600 {}\n\
             ocxfs: 1 documents and 0 samples mounted at {}\n",
            key.display(),
            mnt.canonicalize().unwrap().display()
        )
    );
}

#[test]
fn unmounting_what_is_not_mounted_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .arg("unmount")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!("ocxfs: {} is not mounted\n", dir.path().display())
    );
}

#[test]
fn prefetch_dry_run_posts_nothing_and_jobs_read_every_file() {
    require_fuse();
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    let files: Vec<Vec<u8>> = (0..6).map(|i| pattern(300_000 + i * 7, i as u64)).collect();
    for (i, data) in files.iter().enumerate() {
        write(&docs, &format!("f{i}.bin"), data);
    }
    let emu = EmulatorProc::start(&docs, &[]);
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let m = MountProc::start(&emu, &mnt, &[]);
    let dry = run_ok(
        Command::new(bin())
            .args(["prefetch", "--dry-run"])
            .arg(m.docs()),
    );
    let said = String::from_utf8(dry.stderr).unwrap();
    assert!(said.contains("6 files"), "{said}");
    assert!(said.contains("at most 6 download_uri POSTs"), "{said}");
    assert!(
        said.contains("dry run: nothing read, no POST made"),
        "{said}"
    );
    assert_eq!(emu.posts_total(), 0);
    let out = run_ok(
        Command::new(bin())
            .args(["prefetch", "--yes", "--jobs", "3"])
            .arg(m.docs()),
    );
    let said = String::from_utf8(out.stderr).unwrap();
    assert!(said.contains("6 of 6 files read"), "{said}");
    assert!(said.contains("6 download_uri POSTs made"), "{said}");
    assert_eq!(emu.posts_total(), 6);
    let total: usize = files.iter().map(Vec::len).sum();
    assert_eq!(m.stats()["bytes_served"].as_u64().unwrap(), total as u64);
}
