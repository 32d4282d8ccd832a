//! HTTPS as real storage is: nginx serving the documents over TLS under a CA
//! each test makes (openssl), the emulator's presigned URLs pointing at it,
//! and its API reachable through the same TLS server.

// Mounted through fusermount3 and checked through /proc: Linux only
// (scripts/check-platforms type-checks the rest for macOS and FreeBSD).
#![cfg(target_os = "linux")]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;

const MIB: usize = 1024 * 1024;

/// A CA and a server certificate for 127.0.0.1 signed by it (EC P-256).
fn make_pki(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let openssl = |args: &[&str]| {
        run_ok(Command::new("openssl").args(args).current_dir(dir));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    openssl(
        &[
            &["req", "-x509", "-nodes", "-days", "2"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-subj",
                "/CN=ocxfs test CA",
            ],
            &["-addext", "basicConstraints=critical,CA:TRUE"],
            &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req", "-new", "-nodes"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        "server.pem",
        "-extfile",
        "server.ext",
    ]);
    dir.join("ca.pem")
}

/// A port nothing listens on now (the OS does not hand it out again at once).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// nginx over TLS on `port`: the files of `docs` at `/`, the emulator's API
/// at `/api/`. One process (no master), stopped by its pid.
struct Nginx {
    child: Child,
    url: String,
    access_log: PathBuf,
}

impl Nginx {
    fn start(dir: &Path, port: u16, docs: &Path, api: &str) -> Nginx {
        assert!(
            Command::new("nginx").arg("-v").output().is_ok(),
            "nginx is missing: these tests need it (apt-get install nginx; scripts/setup-fuse does)"
        );
        let d = dir.display();
        for sub in ["tmp", "logs"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let access_log = dir.join("access.log");
        let conf = format!(
            r#"
user root;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ }}
http {{
    access_log {log} combined;
    client_body_temp_path {d}/tmp/client;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {d}/server.pem;
        ssl_certificate_key {d}/server.key;
        root {docs};
        location / {{ }}
        location /api/ {{ proxy_pass {api}; }}
    }}
}}
"#,
            log = access_log.display(),
            docs = docs.display(),
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .args(["-g", "daemon off; master_process off;"])
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nginx");
        let mut n = Nginx {
            child,
            url: format!("https://127.0.0.1:{port}"),
            access_log,
        };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = n.child.try_wait().unwrap() {
                panic!(
                    "nginx exited with {status}: {}",
                    std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "nginx did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        n
    }

    /// Ranged GETs nginx answered (206) so far.
    fn partial_answers(&self) -> usize {
        std::fs::read_to_string(&self.access_log)
            .unwrap()
            .lines()
            .filter(|l| l.contains("\" 206 "))
            .count()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Documents served over HTTPS: the emulator (API over plain HTTP, and
/// through nginx over TLS), nginx as storage, the CA that signed nginx.
struct Setup {
    tmp: tempfile::TempDir,
    emu: EmulatorProc,
    nginx: Nginx,
    ca: PathBuf,
    mnt: PathBuf,
}

fn setup(files: &[(&str, &[u8])]) -> Setup {
    require_fuse();
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    for (name, data) in files {
        write(&docs, name, data);
    }
    let tls = tmp.path().join("nginx");
    let ca = make_pki(&tls);
    let port = free_port();
    let storage = format!("https://127.0.0.1:{port}");
    let emu = EmulatorProc::start(&docs, &["--storage-base", &storage]);
    let nginx = Nginx::start(&tls, port, &docs, &emu.url);
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    Setup {
        tmp,
        emu,
        nginx,
        ca,
        mnt,
    }
}

/// A detached `ocxfs mount` that must fail: what it printed.
fn failed_mount(mut cmd: Command, mnt: &Path) -> String {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success(), "mounted: {stderr}");
    assert!(!is_mounted(mnt));
    stderr
}

#[test]
fn every_byte_arrives_over_https_with_ca_file_for_api_and_storage() {
    let big = pattern(20 * MIB + 12_345, 41);
    let s = setup(&[("big.bin", &big), ("small.txt", b"over TLS\n")]);
    let ca = s.ca.to_str().unwrap();
    let mut cmd = mount_command(&s.nginx.url, &s.mnt, &["--ca-file", ca]);
    cmd.arg("--foreground");
    let m = MountProc::spawn(cmd, &s.mnt);
    let file = m.docs().join("big.bin");
    assert_eq!(sha256sum(&file), sha256(&big));
    drop_page_cache(&file);
    assert!(std::fs::read(&file).unwrap() == big, "bytes differ");
    assert_eq!(
        std::fs::read(m.docs().join("small.txt")).unwrap(),
        b"over TLS\n"
    );
    // Storage was nginx over TLS: the emulator signed, nginx served.
    assert!(
        s.nginx.partial_answers() >= 3,
        "too few ranged GETs reached nginx"
    );
    assert_eq!(s.emu.posts(&s.emu.id_of("big.bin")), 1);
    assert_eq!(m.stats()["errors"], serde_json::json!({}));
}

#[test]
fn ssl_cert_file_is_trusted_like_ca_file() {
    let s = setup(&[("a.txt", b"trusted through SSL_CERT_FILE\n")]);
    let mut cmd = mount_command(&s.nginx.url, &s.mnt, &["--foreground"]);
    cmd.env("SSL_CERT_FILE", &s.ca);
    let m = MountProc::spawn(cmd, &s.mnt);
    assert_eq!(
        std::fs::read(m.docs().join("a.txt")).unwrap(),
        b"trusted through SSL_CERT_FILE\n"
    );
}

#[test]
fn an_untrusted_api_certificate_stops_the_mount_with_its_cause() {
    let s = setup(&[("a.txt", b"a")]);
    let stderr = failed_mount(mount_command(&s.nginx.url, &s.mnt, &[]), &s.mnt);
    assert_eq!(
        stderr,
        "ocxfs: certificate for 127.0.0.1 not trusted (unknown issuer): pass --ca-file or set \
         SSL_CERT_FILE\n"
    );
    assert_eq!(s.emu.posts_total(), 0);
}

#[test]
fn untrusted_storage_fails_the_read_at_once_with_its_cause() {
    let s = setup(&[("a.txt", &pattern(100_000, 3))]);
    // The API over plain HTTP, storage over TLS that is not trusted.
    let mut cmd = mount_command(&s.emu.url, &s.mnt, &["--foreground"]);
    let log = s.tmp.path().join("mount.log");
    cmd.stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
    let m = MountProc::spawn(cmd, &s.mnt);
    let cat = Command::new("cat")
        .arg(m.docs().join("a.txt"))
        .output()
        .unwrap();
    assert!(!cat.status.success());
    assert!(cat.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&cat.stderr).contains("Input/output error"),
        "{}",
        String::from_utf8_lossy(&cat.stderr)
    );
    let expected = "certificate for 127.0.0.1 not trusted (unknown issuer): pass --ca-file or set \
                    SSL_CERT_FILE";
    let stats = m.stats();
    // No GET is sent again: that could not help. (The kernel may ask for
    // the page-cache read-ahead besides cat's read: one GET each.)
    assert_eq!(stats["storage_retries"], 0, "{stats}");
    assert!(stats["storage_gets"].as_u64().unwrap() <= 2, "{stats}");
    assert_eq!(stats["last_error"], expected, "{stats}");
    assert!(stats["errors"]["tls"].as_u64().unwrap() >= 1, "{stats}");
    let shown = run_ok(Command::new(bin()).arg("stats").arg(&s.mnt));
    let shown = String::from_utf8(shown.stdout).unwrap();
    assert!(shown.contains("last error"), "{shown}");
    assert!(shown.contains(expected), "{shown}");
    assert!(
        std::fs::read_to_string(&log).unwrap().contains(expected),
        "the log does not say why"
    );
}

/// A minimal HTTP CONNECT proxy on loopback: how many tunnels it opened.
fn connect_proxy() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let tunnels = Arc::new(AtomicUsize::new(0));
    let count = tunnels.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let count = count.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(client.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let target = line.split(' ').nth(1).unwrap().to_owned();
                while reader.read_line(&mut line).unwrap() > 0 && !line.ends_with("\r\n\r\n") {}
                let upstream = TcpStream::connect(&target).unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                let mut client = client;
                client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .unwrap();
                let (mut c2, mut u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                std::thread::spawn(move || std::io::copy(&mut u2, &mut c2));
                let mut upstream = upstream;
                let _ = std::io::copy(&mut reader, &mut upstream);
            });
        }
    });
    (url, tunnels)
}

#[test]
fn a_refused_proxy_is_named_and_https_proxy_with_no_proxy_work() {
    let s = setup(&[("a.txt", b"through the proxy\n")]);
    let ca = s.ca.to_str().unwrap();
    let closed = free_port();
    let mut cmd = mount_command(&s.nginx.url, &s.mnt, &["--ca-file", ca]);
    cmd.env("HTTPS_PROXY", format!("http://127.0.0.1:{closed}"));
    let stderr = failed_mount(cmd, &s.mnt);
    assert_eq!(
        stderr,
        format!(
            "ocxfs: cannot connect to 127.0.0.1 through the proxy 127.0.0.1:{closed} (connection \
             refused): check HTTPS_PROXY and HTTP_PROXY, or add 127.0.0.1 to NO_PROXY\n"
        )
    );

    // NO_PROXY lets the same mount go direct.
    let mut cmd = mount_command(&s.nginx.url, &s.mnt, &["--ca-file", ca, "--foreground"]);
    cmd.env("HTTPS_PROXY", format!("http://127.0.0.1:{closed}"))
        .env("NO_PROXY", "127.0.0.1");
    let m = MountProc::spawn(cmd, &s.mnt);
    assert_eq!(
        std::fs::read(m.docs().join("a.txt")).unwrap(),
        b"through the proxy\n"
    );
    drop(m);

    // A working proxy carries the API and storage through CONNECT tunnels.
    let (proxy, tunnels) = connect_proxy();
    let mut cmd = mount_command(&s.nginx.url, &s.mnt, &["--ca-file", ca, "--foreground"]);
    cmd.env("HTTPS_PROXY", &proxy);
    let m = MountProc::spawn(cmd, &s.mnt);
    assert_eq!(
        std::fs::read(m.docs().join("a.txt")).unwrap(),
        b"through the proxy\n"
    );
    assert!(
        tunnels.load(Ordering::SeqCst) >= 2,
        "the API and storage should each open a tunnel"
    );
}
