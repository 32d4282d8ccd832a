//! Faults and bad input through a real mount: storage errors, resets,
//! short bodies, stalls, changed objects, API errors on the POST and the
//! listing, dead servers, killed daemons, and secrets in logs.

// Mounted through fusermount3 and checked through /proc: Linux only
// (scripts/check-platforms type-checks the rest for macOS and FreeBSD).
#![cfg(target_os = "linux")]

mod common;

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const MIB: usize = 1024 * 1024;

struct Setup {
    tmp: tempfile::TempDir,
    emu: EmulatorProc,
    data: Vec<u8>,
}

impl Setup {
    fn new(size: usize, emu_args: &[&str]) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let data = pattern(size, 5150);
        write(&tmp.path().join("docs"), "data.bin", &data);
        let emu = EmulatorProc::start(&tmp.path().join("docs"), emu_args);
        Setup { tmp, emu, data }
    }

    fn mount(&self, args: &[&str]) -> MountProc {
        let mnt = self.tmp.path().join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        MountProc::start(&self.emu, &mnt, args)
    }

    fn fault(&self, json: serde_json::Value) {
        self.emu.fault(json);
    }

    fn clear_faults(&self) {
        self.emu.curl(&[
            "-X",
            "DELETE",
            &format!("{}/_emulator/faults", self.emu.url),
        ]);
    }

    fn id(&self) -> String {
        self.emu.id_of("data.bin")
    }
}

fn errno_of(r: std::io::Result<impl Sized>) -> i32 {
    r.err()
        .and_then(|e| e.raw_os_error())
        .expect("the operation should fail")
}

#[test]
fn transient_storage_failures_are_retried_and_bytes_stay_exact() {
    let s = Setup::new(16 * MIB + 99, &[]);
    let m = s.mount(&["--stall-timeout", "1"]);
    let file = m.docs().join("data.bin");
    for (i, fault) in [
        serde_json::json!({"kind": "storage_status", "status": 503, "count": 2}),
        serde_json::json!({"kind": "storage_status", "status": 500, "count": 1}),
        serde_json::json!({"kind": "storage_status", "status": 429, "retry_after": 1, "count": 1}),
        serde_json::json!({"kind": "reset", "count": 2}),
        serde_json::json!({"kind": "short_body", "count": 2}),
        serde_json::json!({"kind": "stall", "seconds": 3, "count": 1}),
    ]
    .into_iter()
    .enumerate()
    {
        drop_page_cache(&file);
        // A fresh region per fault, so the block cache cannot answer.
        let f = std::fs::File::open(&file).unwrap();
        let gets_before = s.emu.stats()["range_gets"].as_u64().unwrap();
        s.fault(fault.clone());
        let mut buf = vec![0; 700_000];
        // Not at 0 and far apart: random reads, no read-ahead between them.
        let off = 100_000 + i * 5 * MIB / 2;
        let n = f.read_at(&mut buf, off as u64).unwrap();
        assert!(buf[..n] == s.data[off..off + n], "{fault}: wrong bytes");
        let stats = s.emu.stats();
        assert!(
            stats["range_gets"].as_u64().unwrap() > gets_before + 1,
            "{fault}: no retry seen: {stats}"
        );
        s.clear_faults();
    }
    assert_eq!(sha256sum(&file), sha256(&s.data));
    assert_eq!(s.emu.posts_total(), 1, "retries of GETs never POST");
}

#[test]
fn a_persistent_storage_failure_is_eio_and_heals_when_storage_does() {
    let s = Setup::new(2 * MIB, &[]);
    let m = s.mount(&[]);
    let file = m.docs().join("data.bin");
    s.fault(serde_json::json!({"kind": "storage_status", "status": 500}));
    let started = Instant::now();
    assert_eq!(errno_of(std::fs::read(&file)), libc::EIO);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "bounded retries"
    );
    s.clear_faults();
    assert!(std::fs::read(&file).unwrap() == s.data);
    assert_eq!(s.emu.posts_total(), 1);
}

#[test]
fn a_changed_object_is_estale_never_mixed_bytes() {
    let s = Setup::new(8 * MIB, &[]);
    let m = s.mount(&[]);
    let file = m.docs().join("data.bin");
    let mut f = std::fs::File::open(&file).unwrap();
    let mut head = vec![0; 4096];
    f.read_exact(&mut head).unwrap();
    assert!(head == s.data[..4096]);
    s.emu.control(&format!("documents/{}/change", s.id()));
    f.seek(SeekFrom::Start(6 * MIB as u64)).unwrap();
    let mut later = vec![0; 4096];
    assert_eq!(errno_of(f.read_exact(&mut later)), libc::ESTALE);
    drop(f);
    // A new open sees the new version, whole and consistent.
    let new = std::fs::read(&file).unwrap();
    assert_eq!(new.len(), s.data.len());
    assert!(new != s.data);
    let key = new[0] ^ s.data[0];
    assert!(
        new.iter().zip(&s.data).all(|(n, o)| n ^ o == key),
        "bytes of two versions were mixed"
    );
}

#[test]
fn post_errors_map_to_errno_and_are_not_retried() {
    let statuses = [
        (402, libc::EACCES),
        (403, libc::EACCES),
        (401, libc::EACCES),
        (404, libc::ENOENT),
        (500, libc::EIO),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let data = pattern(1000, 5150);
    for (status, _) in statuses {
        write(&tmp.path().join("docs"), &format!("{status}.bin"), &data);
    }
    let emu = EmulatorProc::start(&tmp.path().join("docs"), &[]);
    let s = Setup { tmp, emu, data };
    let m = s.mount(&[]);
    for (status, errno) in statuses {
        let name = format!("{status}.bin");
        let file = m.docs().join(&name);
        let id = s.emu.id_of(&name);
        s.fault(
            serde_json::json!({"kind": "api_status", "route": "post", "status": status, "doc": id}),
        );
        assert_eq!(errno_of(std::fs::File::open(&file)), errno, "HTTP {status}");
        // Tools retry open: the failure is remembered, no new POST.
        for _ in 0..5 {
            assert_eq!(
                errno_of(std::fs::File::open(&file)),
                errno,
                "HTTP {status} again"
            );
        }
        assert_eq!(s.emu.posts(&id), 1, "POSTs after HTTP {status}");
    }
    s.clear_faults();
    // The first backoff lasts 10 s; then one POST is made again.
    std::thread::sleep(Duration::from_millis(10_100));
    assert!(std::fs::read(m.docs().join("500.bin")).unwrap() == s.data);
    assert_eq!(s.emu.posts(&s.emu.id_of("500.bin")), 2);
}

#[test]
fn a_rate_limited_post_is_retried_after_retry_after() {
    let s = Setup::new(1000, &[]);
    let m = s.mount(&[]);
    s.fault(serde_json::json!({"kind": "api_status", "route": "post", "status": 429, "retry_after": 1, "count": 1}));
    let started = Instant::now();
    assert!(std::fs::read(m.docs().join("data.bin")).unwrap() == s.data);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(s.emu.posts(&s.id()), 2, "one refused with 429, one served");
}

#[test]
fn a_failing_listing_stops_the_mount_with_a_clear_error() {
    let s = Setup::new(10, &[]);
    s.fault(serde_json::json!({"kind": "api_status", "route": "list", "status": 500}));
    let mnt = s.tmp.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let out = Command::new(bin())
        .arg("mount")
        .arg(&mnt)
        .args(["--api-base", &s.emu.url, "--api-key", KEY])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("500"), "{stderr}");
    assert!(!is_mounted(&mnt));
}

#[test]
fn a_read_from_a_stalled_server_times_out() {
    let s = Setup::new(2 * MIB, &[]);
    let m = s.mount(&["--stall-timeout", "20", "--read-timeout", "2"]);
    let f = std::fs::File::open(m.docs().join("data.bin")).unwrap();
    s.fault(serde_json::json!({"kind": "stall", "seconds": 30}));
    let started = Instant::now();
    let mut buf = vec![0; 4096];
    assert_eq!(errno_of(f.read_at(&mut buf, MIB as u64)), libc::ETIMEDOUT);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
    s.clear_faults();
}

/// A reader blocked on a stalled server, started as a Python process that
/// opens the file (O_DIRECT: each read is one FUSE request the process
/// waits on), says so, and reads 4 KiB at 1 MiB when told to.
fn blocked_reader(
    path: &std::path::Path,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStdout>,
) {
    use std::io::BufRead;
    let script = r#"
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)
print("opened", flush=True)
sys.stdin.readline()
try:
    data = os.pread(fd, 4096, 1 << 20)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(3)
print("read", len(data), flush=True)
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "opened");
    (child, out)
}

/// Wait for `child` to exit, at most `limit`.
fn exit_within(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the blocked reader did not stop within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_signal_interrupts_a_read_blocked_on_a_stalled_server() {
    use std::io::{BufRead, Write};
    use std::os::unix::process::ExitStatusExt;
    let s = Setup::new(2 * MIB, &[]);
    // Neither the stall cut nor the read timeout would end the wait soon:
    // only the interrupt can.
    let m = s.mount(&["--stall-timeout", "60", "--read-timeout", "60"]);
    let path = m.docs().join("data.bin");
    let (mut sigint, mut sigint_out) = blocked_reader(&path);
    let (mut sigkill, _) = blocked_reader(&path);
    s.fault(serde_json::json!({"kind": "stall", "seconds": 60}));
    for child in [&mut sigint, &mut sigkill] {
        child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    }
    // Both are now waiting on storage that answers in a minute.
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        sigint.try_wait().unwrap().is_none(),
        "the read should block"
    );

    // SAFETY: plain kill(2) on our children.
    unsafe { libc::kill(sigint.id() as i32, libc::SIGINT) };
    let status = exit_within(&mut sigint, Duration::from_secs(5));
    let mut line = String::new();
    sigint_out.read_line(&mut line).unwrap();
    assert_eq!(
        (status.code(), line.trim()),
        (Some(3), "interrupted"),
        "Ctrl-C reaches the process as EINTR then KeyboardInterrupt"
    );

    unsafe { libc::kill(sigkill.id() as i32, libc::SIGKILL) };
    let status = exit_within(&mut sigkill, Duration::from_secs(5));
    assert_eq!(status.signal(), Some(libc::SIGKILL));

    // The mount goes on once storage answers (elsewhere in the file: the
    // interrupted download itself waits out its stall).
    s.clear_faults();
    let f = std::fs::File::open(&path).unwrap();
    let mut buf = vec![0; 4096];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(buf, s.data[..4096]);
    let stats = m.stats();
    assert_eq!(stats["errors"]["interrupted"], 2, "{stats}");
    assert_eq!(s.emu.posts(&s.id()), 1, "interrupts cost no POST");
}

#[test]
fn a_caught_signal_does_not_fail_a_read_in_progress() {
    // Every read waits 300 ms for storage while a timer signal, caught by a
    // handler as profilers and progress bars do, arrives every 5 ms: the
    // kernel interrupts each read, and each must still return its bytes.
    let s = Setup::new(12 * MIB, &["--latency-ms", "300"]);
    let m = s.mount(&[]);
    let script = r#"
import ctypes, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.pread.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_long]
libc.pread.restype = ctypes.c_ssize_t
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)
signal.signal(signal.SIGALRM, lambda *_: None)
signal.setitimer(signal.ITIMER_REAL, 0.005, 0.005)
buf = ctypes.create_string_buffer(4096)
failed, data = [], b""
for i in range(5):
    # libc's pread, not os.pread: Python would retry EINTR itself
    n = libc.pread(fd, buf, 4096, (2 * i + 1) << 20)
    if n < 0:
        failed.append(os.strerror(ctypes.get_errno()))
    data += buf.raw[:max(n, 0)]
signal.setitimer(signal.ITIMER_REAL, 0)
print(failed, data.hex())
"#;
    let out = run_ok(
        Command::new("python3")
            .args(["-c", script])
            .arg(m.docs().join("data.bin")),
    );
    let out = String::from_utf8(out.stdout).unwrap();
    let (failed, hex) = out.trim().rsplit_once(' ').unwrap();
    assert_eq!(failed, "[]", "reads failed");
    let want: String = (0..5)
        .flat_map(|i| &s.data[(2 * i + 1) * MIB..(2 * i + 1) * MIB + 4096])
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(hex == want, "wrong bytes");
}

#[test]
fn a_killed_daemon_leaves_a_dead_mount_that_the_next_mount_clears() {
    let s = Setup::new(1000, &[]);
    let mut m = s.mount(&[]);
    // SAFETY: plain kill(2) on our child.
    unsafe { libc::kill(m.pid(), libc::SIGKILL) };
    let _ = m.terminate();
    let docs = m.docs();
    assert_eq!(
        errno_of(std::fs::metadata(&docs)),
        libc::ENOTCONN,
        "a dead mount"
    );
    let out = run_ok(Command::new(bin()).arg("mount").arg(&m.dir).args([
        "--api-base",
        &s.emu.url,
        "--api-key",
        KEY,
    ]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stale mount"));
    assert!(std::fs::read(docs.join("data.bin")).unwrap() == s.data);
    let un = Command::new(bin())
        .arg("unmount")
        .arg(&m.dir)
        .status()
        .unwrap();
    assert!(un.success());
}

#[test]
fn secrets_never_reach_the_log() {
    let s = Setup::new(4 * MIB, &["--url-ttl", "1"]);
    let log = s.tmp.path().join("trace.log");
    let mnt = s.tmp.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let m = MountProc::start_logged(&s.emu, &mnt, &[], Some(&log));
    let file = m.docs().join("data.bin");
    let f = std::fs::File::open(&file).unwrap();
    let mut buf = vec![0; 4096];
    f.read_at(&mut buf, 0).unwrap();
    std::thread::sleep(Duration::from_millis(2_100));
    f.read_at(&mut buf, 3 * MIB as u64).unwrap();
    s.fault(serde_json::json!({"kind": "api_status", "route": "post", "status": 402, "count": 1}));
    drop(m);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("TRACE") || text.contains("DEBUG"),
        "trace logging was on"
    );
    assert!(text.contains("expired"), "the expiry was logged");
    assert!(!text.contains(KEY), "the API key is in the log");
    assert!(
        !text.contains("X-Amz-Signature") && !text.contains("/storage/"),
        "a presigned URL is in the log"
    );
}
