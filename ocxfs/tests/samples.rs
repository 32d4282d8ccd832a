//! Samples, projects, tags and the views users expect: flat, by id, by
//! project, by tag; extended attributes; freshness; scale.

// Mounted through fusermount3 and checked through /proc: Linux only
// (scripts/check-platforms type-checks the rest for macOS and FreeBSD).
#![cfg(target_os = "linux")]

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const MIB: usize = 1024 * 1024;

struct Account {
    _tmp: tempfile::TempDir,
    emu: EmulatorProc,
    mount: MountProc,
    gut: Vec<u8>,
}

/// Two projects, two tags, three available samples (one of unknown size)
/// and one still importing.
fn account(mount_args: &[&str]) -> Account {
    let tmp = tempfile::tempdir().unwrap();
    let samples = tmp.path().join("samples");
    let gut = pattern(5 * MIB + 3, 9);
    write(&samples, "gut.fastq.gz", &gut);
    write(&samples, "soil.fastq.gz", &pattern(300_000, 10));
    write(&samples, "sizeless.fasta", &pattern(100_000, 11));
    write(&tmp.path().join("docs"), "notes.txt", b"notes\n");
    let manifest = tmp.path().join("samples.json");
    std::fs::write(
        &manifest,
        serde_json::json!({
            "projects": [
                {"id": "aaaaaaaaaaaaaaa1", "name": "Gut study 2024", "project_name": "gut_2024"},
                {"id": "aaaaaaaaaaaaaaa2", "name": "Soil/field work", "project_name": null}
            ],
            "tags": [{"id": "bbbbbbbbbbbbbbb1", "name": "WGS"}, {"id": "bbbbbbbbbbbbbbb2", "name": "neg. control"}],
            "samples": [
                {"path": "gut.fastq.gz", "project": "aaaaaaaaaaaaaaa1", "tags": ["bbbbbbbbbbbbbbb1", "bbbbbbbbbbbbbbb2"], "visibility": "private"},
                {"path": "soil.fastq.gz", "project": "aaaaaaaaaaaaaaa2", "tags": ["bbbbbbbbbbbbbbb1"]},
                {"path": "sizeless.fasta", "null_size": true},
                {"path": null, "filename": "pending.fastq.gz", "status": "importing", "id": "cccccccccccccccc"}
            ]
        })
        .to_string(),
    )
    .unwrap();
    let emu = EmulatorProc::start(
        &tmp.path().join("docs"),
        &[
            "--samples",
            samples.to_str().unwrap(),
            "--samples-manifest",
            manifest.to_str().unwrap(),
        ],
    );
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mount = MountProc::start(&emu, &mnt, mount_args);
    Account {
        _tmp: tmp,
        emu,
        mount,
        gut,
    }
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

#[test]
fn samples_appear_in_every_view_and_read_once_through_all_paths() {
    let a = account(&[]);
    let s = a.mount.dir.join("samples");
    assert_eq!(
        names(&s),
        BTreeSet::from(
            [
                ".by-id",
                "by-project",
                "by-tag",
                "gut.fastq.gz",
                "sizeless.fasta",
                "soil.fastq.gz"
            ]
            .map(String::from)
        )
    );
    assert!(
        !s.join("pending.fastq.gz").exists(),
        "a sample still importing is not listed"
    );
    assert_eq!(
        names(&s.join("by-project")),
        BTreeSet::from(["gut_2024", "Soil_field work"].map(String::from))
    );
    assert_eq!(
        names(&s.join("by-tag")),
        BTreeSet::from(["WGS", "neg. control"].map(String::from))
    );
    assert_eq!(
        names(&s.join("by-tag/WGS")),
        BTreeSet::from(["gut.fastq.gz", "soil.fastq.gz"].map(String::from))
    );
    let id = a.emu.id_in("samples", "gut.fastq.gz");
    let paths = [
        s.join("gut.fastq.gz"),
        s.join(".by-id").join(&id),
        s.join("by-project/gut_2024/gut.fastq.gz"),
        s.join("by-tag/neg. control/gut.fastq.gz"),
    ];
    let inos: BTreeSet<u64> = paths
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().ino())
        .collect();
    assert_eq!(inos.len(), 1, "one file, several paths");
    assert_eq!(std::fs::metadata(&paths[0]).unwrap().nlink(), 5);
    assert_eq!(a.emu.posts_total(), 0, "listing and stat never POST");
    for p in &paths {
        assert_eq!(sha256sum(p), sha256(&a.gut), "{}", p.display());
    }
    assert_eq!(a.emu.posts(&id), 1, "one POST for all paths");
    // One download serves every path. The kernel may drop a few pages of
    // the file under memory pressure and ask for them again (blocks a
    // sequential reader consumed are not kept), so a few blocks may come
    // twice; a second download of the file would not fit in this bound.
    let fetched = a.emu.stats()["storage_bytes"].as_u64().unwrap();
    let size = a.gut.len() as u64;
    assert!(
        (size..size + size / 4).contains(&fetched),
        "downloaded once: {fetched} bytes fetched for {size}"
    );
    // A sample of unknown size reads in full.
    assert_eq!(
        std::fs::read(s.join("sizeless.fasta")).unwrap(),
        pattern(100_000, 11)
    );
}

#[test]
fn extended_attributes_describe_the_file_without_a_post() {
    let a = account(&[]);
    let file = a.mount.dir.join("samples/gut.fastq.gz");
    let out = run_ok(Command::new("getfattr").args(["-d", "-m", "-"]).arg(&file));
    let text = String::from_utf8_lossy(&out.stdout);
    let id = a.emu.id_in("samples", "gut.fastq.gz");
    for want in [
        format!("user.onecodex.id=\"{id}\""),
        format!("user.onecodex.uri=\"/api/v1/samples/{id}\""),
        "user.onecodex.created_at=".to_owned(),
        "user.onecodex.owner=\"/api/v1/users/".to_owned(),
        "user.onecodex.project=\"/api/v1/projects/aaaaaaaaaaaaaaa1\"".to_owned(),
        "user.onecodex.project_name=\"gut_2024\"".to_owned(),
        "user.onecodex.tags=\"WGS, neg. control\"".to_owned(),
        "user.onecodex.status=\"available\"".to_owned(),
        "user.onecodex.visibility=\"private\"".to_owned(),
    ] {
        assert!(text.contains(&want), "{want} missing from:\n{text}");
    }
    let doc = Command::new("getfattr")
        .args(["-d", "-m", "-"])
        .arg(a.mount.docs().join("notes.txt"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&doc.stdout);
    assert!(
        text.contains("user.onecodex.uploader=\"/api/v1/users/"),
        "{text}"
    );
    let one = Command::new("getfattr")
        .args(["--only-values", "-n", "user.onecodex.id"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&one.stdout), id);
    assert_eq!(a.emu.posts_total(), 0, "xattrs never POST");
}

#[test]
fn upstream_additions_and_deletions_show_after_the_listing_ttl() {
    let a = account(&["--listing-ttl", "1"]);
    let docs = a.mount.docs();
    let added = a.emu.curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"filename": "new report.txt", "content": "fresh\n"}"#,
        &format!("{}/_emulator/documents", a.emu.url),
    ]);
    let new_id = serde_json::from_str::<serde_json::Value>(&added).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually("the new document to appear", || {
        docs.join("new report.txt").exists()
    });
    assert_eq!(
        std::fs::read(docs.join("new report.txt")).unwrap(),
        b"fresh\n"
    );
    assert!(docs.join(".by-id").join(&new_id).exists());

    // An open file stays readable when its document is deleted upstream;
    // the next open fails with ENOENT.
    let notes = docs.join("notes.txt");
    let open = std::fs::File::open(&notes).unwrap();
    let mut before = String::new();
    std::io::Read::read_to_string(&mut &open, &mut before).unwrap();
    let id = a.emu.id_of("notes.txt");
    a.emu.curl(&[
        "-X",
        "DELETE",
        &format!("{}/_emulator/documents/{id}", a.emu.url),
    ]);
    eventually("the deleted document to go", || {
        !names(&docs).contains("notes.txt")
    });
    let mut again = String::new();
    std::io::Read::read_to_string(&mut &open, &mut again).unwrap();
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 6];
    assert_eq!(open.read_at(&mut buf, 0).unwrap(), 6);
    assert_eq!(&buf, b"notes\n");
    let err = std::fs::File::open(&notes).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    let err = std::fs::File::open(docs.join(".by-id").join(&id)).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
}

fn timed(what: &str, cmd: &mut Command) -> (Duration, String) {
    let started = Instant::now();
    let out = cmd.output().unwrap();
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("scale: {what}: {:.3} s", took.as_secs_f64());
    (took, String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn ten_thousand_documents_and_ten_thousand_samples_list_without_a_post() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("docs")).unwrap();
    let emu = EmulatorProc::start(
        &tmp.path().join("docs"),
        &[
            "--generate-documents",
            "10000",
            "--generate-samples",
            "10000",
        ],
    );
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let started = Instant::now();
    let m = MountProc::start(&emu, &mnt, &[]);
    println!(
        "scale: mount (account check and full listing): {:.3} s",
        started.elapsed().as_secs_f64()
    );
    let stats = emu.stats();
    assert!(
        stats["api_requests"]["list_samples"].as_u64().unwrap() >= 10,
        "{stats}"
    );
    let (cold, out) = timed(
        "ls -l documents (cold)",
        Command::new("ls").arg("-l").arg(m.docs()),
    );
    assert_eq!(out.lines().filter(|l| l.starts_with('-')).count(), 10_000);
    let (warm, _) = timed(
        "ls -l documents (warm)",
        Command::new("ls").arg("-l").arg(m.docs()),
    );
    let (_, out) = timed(
        "ls -l samples (cold)",
        Command::new("ls").arg("-l").arg(m.dir.join("samples")),
    );
    let available = out.lines().filter(|l| l.starts_with('-')).count();
    assert!(
        (9_000..10_000).contains(&available),
        "{available} available samples"
    );
    let (find_cold, out) = timed("find (cold)", Command::new("find").arg(&m.dir));
    assert!(out.lines().count() > 20_000 + available);
    let (find_warm, _) = timed("find (warm)", Command::new("find").arg(&m.dir));
    timed("du -s", Command::new("du").arg("-s").arg(&m.dir));
    assert_eq!(emu.posts_total(), 0, "listing the whole mount never POSTs");
    // Loose bounds: the benchmark measures; this only catches a collapse.
    for (what, took) in [
        ("ls cold", cold),
        ("ls warm", warm),
        ("find cold", find_cold),
        ("find warm", find_warm),
    ] {
        assert!(took < Duration::from_secs(30), "{what} took {took:?}");
    }
}
