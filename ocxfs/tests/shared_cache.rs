//! Three mounts of one account (three "nodes") sharing presigned URLs
//! through a real Redis: POSTs counted by the emulator in each case,
//! including Redis stopping and a lease holder killed mid-POST.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::redis::RedisProc;
use common::*;

const NODES: usize = 3;

/// An account of `n` documents, Redis, and `NODES` mounts of it, each with
/// its own state directory, as separate machines would have.
struct Cluster {
    _tmp: tempfile::TempDir,
    emu: EmulatorProc,
    redis: RedisProc,
    nodes: Vec<MountProc>,
    names: Vec<String>,
}

fn content(i: usize) -> Vec<u8> {
    pattern(100_000 + i * 1000, i as u64 + 1)
}

fn cluster(n: usize, extra: &[&str]) -> Cluster {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    let names: Vec<String> = (0..n).map(|i| format!("doc{i:02}.bin")).collect();
    for (i, name) in names.iter().enumerate() {
        write(&docs, name, &content(i));
    }
    let emu = EmulatorProc::start(&docs, &[]);
    let redis = RedisProc::start();
    let nodes = (0..NODES)
        .map(|k| mount_node(&tmp, &emu, &redis, k, extra))
        .collect();
    Cluster {
        _tmp: tmp,
        emu,
        redis,
        nodes,
        names,
    }
}

fn mount_node(
    tmp: &tempfile::TempDir,
    emu: &EmulatorProc,
    redis: &RedisProc,
    k: usize,
    extra: &[&str],
) -> MountProc {
    let mnt = tmp.path().join(format!("node{k}/mnt"));
    std::fs::create_dir_all(&mnt).unwrap();
    let url = redis.url();
    let mut args = vec!["--shared-cache", url.as_str()];
    args.extend_from_slice(extra);
    MountProc::start(emu, &mnt, &args)
}

impl Cluster {
    /// Every node reads `which` documents at once (each node in its own
    /// order, two readers per node) and checks every byte.
    fn read_everywhere(&self, which: std::ops::Range<usize>) {
        std::thread::scope(|s| {
            for (k, node) in self.nodes.iter().enumerate() {
                for reader in 0..2 {
                    let docs = node.docs();
                    let which = which.clone();
                    s.spawn(move || {
                        let n = which.len();
                        for j in 0..n {
                            let i = which.start + (j + k * 7 + reader * 3) % n;
                            let got = std::fs::read(docs.join(format!("doc{i:02}.bin")))
                                .unwrap_or_else(|e| panic!("node {k} doc {i}: {e}"));
                            assert!(got == content(i), "node {k} doc {i}: wrong bytes");
                        }
                    });
                }
            }
        });
    }

    fn posts_of(&self, i: usize) -> u64 {
        self.emu.posts(&self.emu.id_of(&self.names[i]))
    }

    fn shared_stats(&self, k: usize) -> serde_json::Value {
        self.nodes[k].stats()["shared_cache"].clone()
    }
}

#[test]
fn twenty_documents_read_on_three_nodes_cost_twenty_posts() {
    let c = cluster(20, &[]);
    c.read_everywhere(0..20);
    for i in 0..20 {
        assert_eq!(c.posts_of(i), 1, "document {i}");
    }
    assert_eq!(c.emu.posts_total(), 20);
    let hits: u64 = (0..NODES)
        .map(|k| c.shared_stats(k)["hits"].as_u64().unwrap())
        .sum();
    let leases: u64 = (0..NODES)
        .map(|k| c.shared_stats(k)["leases"].as_u64().unwrap())
        .sum();
    assert_eq!(leases, 20);
    assert!(
        hits >= 40,
        "each document came from Redis on two nodes: {hits}"
    );
    // Keys are namespaced and hold the URLs with a TTL.
    let keys = c
        .redis
        .cli(&["--scan", "--pattern", "ocxfs:*:{documents/*}:url"]);
    assert_eq!(keys.lines().count(), 20, "{keys}");
    let ttl: i64 = c
        .redis
        .cli(&["PTTL", keys.lines().next().unwrap()])
        .parse()
        .unwrap();
    // The emulator's URLs live an hour; published with less (the margin).
    assert!(ttl > 0 && ttl < 3_600_000, "{ttl}");
}

/// Reads `len` bytes at `offset` of `file`.
fn read_at(file: &Path, offset: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(file).unwrap();
    let mut buf = vec![0; len];
    f.read_exact_at(&mut buf, offset).unwrap();
    buf
}

#[test]
fn an_expired_url_costs_one_post_across_three_nodes() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    std::fs::create_dir(&docs).unwrap();
    // 64 MiB, mostly a hole: reads far apart need storage again.
    let big = docs.join("big.bin");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(64 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    let tail = pattern(4096, 9);
    f.write_all_at(&tail, 60 << 20).unwrap();
    let emu = EmulatorProc::start(&docs, &[]);
    let redis = RedisProc::start();
    let nodes: Vec<MountProc> = (0..NODES)
        .map(|k| mount_node(&tmp, &emu, &redis, k, &[]))
        .collect();
    let files: Vec<PathBuf> = nodes.iter().map(|n| n.docs().join("big.bin")).collect();
    for file in &files {
        assert_eq!(read_at(file, 0, 4096), vec![0; 4096]);
    }
    assert_eq!(emu.posts_total(), 1);

    emu.control("expire");
    std::thread::scope(|s| {
        for file in &files {
            s.spawn(|| assert_eq!(read_at(file, 60 << 20, 4096), tail));
        }
    });
    assert!(emu.stats()["expired_403"].as_u64().unwrap() >= 1);
    assert_eq!(
        emu.posts_total(),
        2,
        "one POST for the expiry, across the three"
    );
}

#[test]
fn with_redis_stopped_reads_go_on_then_it_is_used_again_once_back() {
    let mut c = cluster(25, &[]);
    c.read_everywhere(0..10);
    assert_eq!(c.emu.posts_total(), 10);

    c.redis.stop();
    c.read_everywhere(10..20);
    for i in 10..20 {
        let p = c.posts_of(i);
        assert!((1..=NODES as u64).contains(&p), "document {i}: {p} POSTs");
    }
    let total = c.emu.posts_total();
    assert!(total <= 10 + 10 * NODES as u64, "{total}");
    for k in 0..NODES {
        let s = c.shared_stats(k);
        assert_eq!(s["available"], false, "node {k}: {s}");
        assert!(s["fallbacks"].as_u64().unwrap() >= 1, "node {k}: {s}");
    }
    // The documents read before still come from each node's own cache.
    for i in 0..10 {
        assert_eq!(c.posts_of(i), 1);
    }
    eprintln!(
        "POSTs with Redis stopped: {} for 10 documents on {NODES} nodes",
        total - 10
    );

    // Back, and tried again once the nodes' 15 s pause is over: one POST
    // per document again.
    c.redis.restart();
    std::thread::sleep(std::time::Duration::from_secs(16));
    c.read_everywhere(20..25);
    assert_eq!(c.emu.posts_total(), total + 5);
    for k in 0..NODES {
        assert_eq!(c.shared_stats(k)["available"], true, "node {k}");
    }
}

#[test]
fn a_lease_holder_killed_during_its_post_costs_at_most_one_more_post() {
    let c = cluster(1, &[]);
    let id = c.emu.id_of(&c.names[0]);
    let terms = |ms: u64| {
        c.emu.curl(&[
            "-X",
            "POST",
            "-d",
            &serde_json::json!({"post_delay_ms": ms}).to_string(),
            &format!("{}/_emulator/documents/{id}/terms", c.emu.url),
        ])
    };
    terms(60_000);
    // Node 0 opens: it takes the lease and its POST hangs in the API.
    let mut opener = Command::new("cat")
        .arg(c.nodes[0].docs().join(&c.names[0]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually("the first POST", || c.emu.posts_total() == 1);
    // SAFETY: kill(2) on the mount daemon this test started.
    unsafe { libc::kill(c.nodes[0].pid(), libc::SIGKILL) };
    let _ = opener.wait();
    terms(0);

    // The other two wait for the lease to run out; then one of them POSTs.
    std::thread::scope(|s| {
        for node in &c.nodes[1..] {
            s.spawn(|| {
                let got = std::fs::read(node.docs().join(&c.names[0])).unwrap();
                assert!(got == content(0));
            });
        }
    });
    assert_eq!(
        c.emu.posts_total(),
        2,
        "the killed holder cost one more POST"
    );
}

#[test]
fn a_budget_of_n_is_shared_by_the_nodes_then_edquot() {
    let c = cluster(5, &["--max-posts", "3/day"]);
    let read = |k: usize, i: usize| std::fs::read(c.nodes[k].docs().join(&c.names[i]));
    assert!(read(0, 0).unwrap() == content(0));
    assert!(read(1, 1).unwrap() == content(1));
    assert!(read(2, 2).unwrap() == content(2));
    let spent = read(0, 3).unwrap_err();
    assert_eq!(spent.raw_os_error(), Some(libc::EDQUOT));
    assert_eq!(read(1, 4).unwrap_err().raw_os_error(), Some(libc::EDQUOT));
    // Documents with a URL in the cluster stay readable on every node.
    assert!(read(2, 0).unwrap() == content(0));
    assert!(read(0, 2).unwrap() == content(2));
    assert_eq!(c.emu.posts_total(), 3);
    let budget = &c.nodes[1].stats()["post_budget"];
    assert_eq!(
        (budget["used"].as_u64(), budget["left"].as_u64()),
        (Some(3), Some(0))
    );
}

#[test]
fn a_redis_that_stops_answering_fails_no_read() {
    let c = cluster(4, &[]);
    c.redis.signal(libc::SIGSTOP);
    c.read_everywhere(0..4);
    c.redis.signal(libc::SIGCONT);
    for i in 0..4 {
        let p = c.posts_of(i);
        assert!((1..=NODES as u64).contains(&p), "document {i}: {p} POSTs");
    }
    for k in 0..NODES {
        let s = c.shared_stats(k);
        assert!(s["fallbacks"].as_u64().unwrap() >= 1, "node {k}: {s}");
    }
}

#[test]
fn a_refused_post_is_shared_instead_of_repeated() {
    let c = cluster(1, &[]);
    c.emu.fault(
        serde_json::json!({"kind": "api_status", "route": "post", "status": 402, "count": 1}),
    );
    let file = |k: usize| c.nodes[k].docs().join(&c.names[0]);
    let err = std::fs::read(file(0)).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES));
    // The other nodes take the refusal from Redis: no POST (which the
    // emulator, its one fault spent, would now have answered).
    for k in 1..NODES {
        let err = std::fs::read(file(k)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EACCES), "node {k}");
    }
    assert_eq!(c.emu.posts_total(), 1);
}
