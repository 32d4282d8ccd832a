//! In-process tests: a real emulator on port 0 driven over HTTP with reqwest.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use super::*;

fn args(docs: Option<&Path>) -> EmulatorArgs {
    EmulatorArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        docs: docs.map(Path::to_path_buf),
        manifest: None,
        url_ttl: 3600,
        api_key: DEMO_API_KEY.into(),
        latency_ms: 0,
        bandwidth: None,
        shuffle_seed: None,
        faults: vec![],
    }
}

/// Deterministic content, different at every offset.
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| store::splitmix64(&mut state) as u8)
        .collect()
}

fn write(dir: &Path, rel: &str, data: &[u8]) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

fn client() -> reqwest::Client {
    // reqwest (rustls-no-provider) panics without a process-wide provider,
    // even for plain http. Err means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

struct T {
    emu: Emulator,
    http: reqwest::Client,
}

impl T {
    async fn new(args: EmulatorArgs) -> T {
        T {
            emu: Emulator::start(args).await.unwrap(),
            http: client(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.emu.base_url())
    }

    async fn api(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .header("X-API-Key", DEMO_API_KEY)
            .send()
            .await
            .unwrap()
    }

    async fn post_uri(&self, id: &str) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/api/v1/documents/{id}/download_uri")))
            .header("X-API-Key", DEMO_API_KEY)
            .send()
            .await
            .unwrap()
    }

    async fn presign(&self, id: &str) -> String {
        let r = self.post_uri(id).await;
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        v["download_uri"].as_str().unwrap().to_owned()
    }

    async fn get(&self, url: &str, range: Option<&str>) -> reqwest::Response {
        let mut rq = self.http.get(url);
        if let Some(r) = range {
            rq = rq.header("Range", r);
        }
        rq.send().await.unwrap()
    }

    async fn control(&self, path: &str, body: Option<Value>) -> reqwest::Response {
        let mut rq = self.http.post(self.url(path));
        if let Some(b) = body {
            rq = rq.json(&b);
        }
        rq.send().await.unwrap()
    }

    /// All documents, in listing order.
    async fn listing(&self) -> Vec<Value> {
        let v: Value = self
            .api("/api/v1/documents?per_page=1000")
            .await
            .json()
            .await
            .unwrap();
        v.as_array().unwrap().clone()
    }

    async fn id_of(&self, filename: &str) -> String {
        let docs = self.listing().await;
        let d = docs.iter().find(|d| d["filename"] == filename).unwrap();
        d["$uri"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned()
    }
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

/// The `<Code>` of an S3 XML error body.
async fn s3_code(r: reqwest::Response) -> String {
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(text.starts_with("<?xml"), "{status}: {}", text.len());
    let start = text.find("<Code>").unwrap() + 6;
    text[start..text[start..].find('<').unwrap() + start].to_owned()
}

#[tokio::test]
async fn auth_listing_and_pagination() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..120 {
        write(dir.path(), &format!("d{}/f{i:03}.txt", i % 7), b"x");
    }
    let t = T::new(args(Some(dir.path()))).await;

    // Without a key: 401 on account, an empty (not failing) listing.
    let r = t.http.get(t.url("/api/v1/account")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        serde_json::json!({"message": "Not logged in", "status": 401})
    );
    let r = t
        .http
        .get(t.url("/api/v1/documents"))
        .header("X-API-Key", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "x-total-count"), Some("0"));
    assert_eq!(r.json::<Value>().await.unwrap(), serde_json::json!([]));

    // The three accepted key forms.
    let account = t.http.get(t.url("/api/v1/account"));
    for rq in [
        account
            .try_clone()
            .unwrap()
            .header("X-API-Key", DEMO_API_KEY),
        account
            .try_clone()
            .unwrap()
            .basic_auth(DEMO_API_KEY, Some("")),
        account.try_clone().unwrap().bearer_auth(DEMO_API_KEY),
    ] {
        let r = rq.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["email"], "demo@ocxfs.invalid");
        assert!(v["$uri"].as_str().unwrap().starts_with("/api/v1/users/"));
    }

    // Three pages, followed through the Link header.
    let mut url = t.url("/api/v1/documents?per_page=50");
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let r = t
            .http
            .get(&url)
            .header("X-API-Key", DEMO_API_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(header(&r, "x-total-count"), Some("120"));
        let link = header(&r, "link").map(str::to_owned);
        let page: Vec<Value> = r.json().await.unwrap();
        pages += 1;
        assert_eq!(page.len(), if pages < 3 { 50 } else { 20 });
        ids.extend(page.iter().map(|d| d["$uri"].as_str().unwrap().to_owned()));
        let Some(link) = link else { break };
        let next = link
            .split(", ")
            .find(|l| l.ends_with("rel=\"next\""))
            .unwrap();
        assert!(link.contains("page=3&per_page=50>; rel=\"last\""));
        url = next[1..next.find('>').unwrap()].to_owned();
        assert!(url.starts_with("http://127.0.0.1:"));
    }
    assert_eq!(pages, 3);
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 120);
    // A page past the end is empty.
    let r = t.api("/api/v1/documents?page=4&per_page=50").await;
    assert_eq!(r.json::<Value>().await.unwrap(), serde_json::json!([]));

    // One document; unknown id 404.
    let r = t.api(&ids[7]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["$uri"], ids[7].as_str());
    let r = t.api("/api/v1/documents/ffffffffffffffff").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], 404);

    let s = t.emu.stats();
    assert_eq!(s.api_requests.account, 4);
    assert_eq!(s.api_requests.list_documents, 5);
    assert_eq!(s.api_requests.get_document, 2);

    // Ids are stable across restarts; a shuffle is a fixed permutation.
    let again = T::new(args(Some(dir.path()))).await;
    let again_ids: Vec<Value> = again
        .listing()
        .await
        .iter()
        .map(|d| d["$uri"].clone())
        .collect();
    assert_eq!(again_ids, ids);
    let shuffled = |seed| {
        let mut a = args(Some(dir.path()));
        a.shuffle_seed = Some(seed);
        a
    };
    let s1 = T::new(shuffled(42)).await.listing().await;
    let s2 = T::new(shuffled(42)).await.listing().await;
    assert_eq!(s1, s2);
    assert_ne!(
        s1.iter().map(|d| d["$uri"].clone()).collect::<Vec<_>>(),
        again_ids
    );
    t.emu.shutdown().await;
}

#[tokio::test]
async fn manifest_overrides() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a/report.pdf", b"one");
    write(dir.path(), "b/report.pdf", b"two!");
    let long = format!("{}/ü.txt", "n".repeat(400));
    let manifest = dir.path().join("../manifest.json");
    std::fs::write(
        &manifest,
        serde_json::to_vec(&serde_json::json!([
            {"path": "a/report.pdf", "filename": long, "id": "00000000000000aa", "created_at": "2019-02-08T13:54:36.768056-08:00"},
            {"path": "b/report.pdf", "null_size": true},
        ]))
        .unwrap(),
    )
    .unwrap();
    let mut a = args(Some(dir.path()));
    a.manifest = Some(manifest.clone());
    let t = T::new(a.clone()).await;
    let docs = t.listing().await;
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0]["$uri"], "/api/v1/documents/00000000000000aa");
    assert_eq!(docs[0]["filename"], long.as_str());
    assert_eq!(docs[0]["size"], 3);
    assert_eq!(docs[1]["filename"], "report.pdf");
    assert_eq!(docs[1]["size"], Value::Null);
    // The presigned URL carries the encoded name, and the bytes are right.
    let url = t.presign("00000000000000aa").await;
    assert!(url.contains("/storage/00000000000000aa/nnnn"));
    assert!(url.contains("%2F%C3%BC.txt?"));
    assert_eq!(
        t.get(&url, None).await.bytes().await.unwrap().as_ref(),
        b"one"
    );

    std::fs::write(&manifest, r#"[{"path": "c/missing.pdf"}]"#).unwrap();
    let err = Emulator::start(a.clone()).await.err().unwrap();
    assert!(err.to_string().contains("c/missing.pdf"), "{err}");
    std::fs::write(&manifest, r#"[{"path": "a/report.pdf", "colour": "red"}]"#).unwrap();
    assert!(matches!(
        Emulator::start(a).await,
        Err(EmulatorError::Manifest(_))
    ));
}

#[tokio::test]
async fn storage_ranges_conditions_and_counters() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(3 * 1024 * 1024 + 12345, 1);
    write(dir.path(), "big.bin", &data);
    write(dir.path(), "empty.txt", b"");
    let t = T::new(args(Some(dir.path()))).await;
    let id = t.id_of("big.bin").await;
    let size = data.len() as u64;

    // Unknown id on the API: 404 (still counted as a POST).
    assert_eq!(
        t.post_uri("0000000000000000").await.status(),
        StatusCode::NOT_FOUND
    );
    let r = t
        .http
        .post(t.url(&format!("/api/v1/documents/{id}/download_uri")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = t.post_uri(&id).await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["expires_in_hours"], 1);
    let url = v["download_uri"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("{}/storage/{id}/big.bin?", t.emu.base_url())));

    // Ranges: exact bytes, across chunk boundaries.
    let cases = [
        ("bytes=0-0", 0, 0),
        ("bytes=1048570-2097160", 1048570, 2097160),
        ("bytes=3000000-", 3000000, size - 1),
        ("bytes=-100", size - 100, size - 1),
        ("bytes=10-999999999", 10, size - 1),
    ];
    let mut expected_bytes = 0;
    for (range, a, b) in cases {
        let r = t.get(&url, Some(range)).await;
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            header(&r, "content-range"),
            Some(format!("bytes {a}-{b}/{size}").as_str())
        );
        assert_eq!(
            header(&r, "content-length"),
            Some((b - a + 1).to_string().as_str())
        );
        assert_eq!(header(&r, "accept-ranges"), Some("bytes"));
        assert_eq!(header(&r, "content-type"), Some("application/octet-stream"));
        assert!(header(&r, "last-modified").unwrap().ends_with(" GMT"));
        let body = r.bytes().await.unwrap();
        assert!(body[..] == data[a as usize..=b as usize], "{range}");
        expected_bytes += b - a + 1;
    }
    let r = t.get(&url, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let etag = header(&r, "etag").unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.len() == 34, "{etag}");
    assert!(r.bytes().await.unwrap()[..] == data[..]);
    expected_bytes += size;

    // Unsatisfiable; invalid syntax is ignored (whole object).
    let r = t.get(&url, Some(&format!("bytes={size}-"))).await;
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        header(&r, "content-range"),
        Some(format!("bytes */{size}").as_str())
    );
    assert_eq!(s3_code(r).await, "InvalidRange");
    let r = t.get(&url, Some("bytes=0-1,5-6")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().len() as u64, size);
    expected_bytes += size;
    let empty_url = t.presign(&t.id_of("empty.txt").await).await;
    let r = t.get(&empty_url, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.bytes().await.unwrap().is_empty());
    assert_eq!(
        t.get(&empty_url, Some("bytes=0-")).await.status(),
        StatusCode::RANGE_NOT_SATISFIABLE
    );

    // If-Match with the current ETag passes.
    let r = t
        .http
        .get(&url)
        .header("Range", "bytes=0-9")
        .header("If-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert!(r.bytes().await.unwrap()[..] == data[..10]);
    expected_bytes += 10;

    // Change: old URL serves new bytes (XOR 1) with a new ETag; old ETag -> 412.
    let r = t
        .control(&format!("/_emulator/documents/{id}/change"), None)
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["generation"], 1);
    let r = t
        .http
        .get(&url)
        .header("Range", "bytes=0-9")
        .header("If-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(s3_code(r).await, "PreconditionFailed");
    let r = t.get(&url, Some("bytes=0-9")).await;
    assert_ne!(header(&r, "etag").unwrap(), etag);
    let changed: Vec<u8> = data[..10].iter().map(|b| b ^ 1).collect();
    assert!(r.bytes().await.unwrap()[..] == changed[..]);
    expected_bytes += 10;
    assert_eq!(
        t.control("/_emulator/documents/nope/change", None)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    // Signature, unknown key, HEAD, leaked credentials.
    let flipped = if url.ends_with('0') { "1" } else { "0" };
    let tampered = format!("{}{flipped}", &url[..url.len() - 1]);
    assert_eq!(
        s3_code(t.get(&tampered, None).await).await,
        "SignatureDoesNotMatch"
    );
    let unsigned = url.split('?').next().unwrap();
    assert_eq!(t.get(unsigned, None).await.status(), StatusCode::FORBIDDEN);
    let r = t.get(&url.replace(&id, "0123456789abcdef"), None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(s3_code(r).await, "NoSuchKey");
    assert_eq!(
        t.http.head(&url).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let r = t
        .http
        .get(&url)
        .header("Range", "bytes=0-0")
        .header("X-API-Key", DEMO_API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().len(), 1);
    expected_bytes += 1;

    let s = t.emu.stats();
    assert_eq!(s.posts_total, 4);
    assert_eq!(s.posts[&id], 2);
    assert_eq!(s.posts["0000000000000000"], 1);
    assert_eq!(s.range_gets, 12);
    assert_eq!(s.full_gets, 5);
    assert_eq!(s.storage_bytes, expected_bytes);
    assert_eq!(s.storage_requests_with_credentials, 1);
    assert_eq!(s.expired_403, 0);

    // The HTTP view is the same data; reset zeroes it.
    let http: Stats = t
        .http
        .get(t.url("/_emulator/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(http, s);
    assert_eq!(
        t.control("/_emulator/reset-stats", None).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(t.emu.stats(), Stats::default());
    t.emu.shutdown().await;
}

#[tokio::test]
async fn expiry() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "x.txt", b"hello");
    let mut a = args(Some(dir.path()));
    a.url_ttl = 1;
    let t = T::new(a).await;
    let id = t.id_of("x.txt").await;
    let url = t.presign(&id).await;
    assert_eq!(t.get(&url, None).await.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = t.get(&url, None).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let text = r.text().await.unwrap();
    assert!(text.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code><Message>Request has expired</Message><Expires>"), "{text}");
    assert!(text.contains("<ServerTime>") && text.contains("<RequestId>"));

    // Expire-all invalidates URLs issued so far, not later ones.
    let mut b = args(Some(dir.path()));
    b.url_ttl = 7200;
    let t = T::new(b).await;
    let v: Value = t.post_uri(&id).await.json().await.unwrap();
    assert_eq!(v["expires_in_hours"], 2);
    let old = v["download_uri"].as_str().unwrap().to_owned();
    t.control("/_emulator/expire", None).await;
    let fresh = t.presign(&id).await;
    assert_eq!(s3_code(t.get(&old, None).await).await, "AccessDenied");
    assert_eq!(t.get(&fresh, None).await.text().await.unwrap(), "hello");
    assert_eq!(t.emu.stats().expired_403, 1);
}

#[tokio::test]
async fn faults() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(4 * 1024 * 1024, 2);
    write(dir.path(), "f.bin", &data);
    let mut a = args(Some(dir.path()));
    a.faults = vec!["storage_status:status=503,count=1".into()];
    let bad = EmulatorArgs {
        faults: vec!["storage_status:status=404".into()],
        ..a.clone()
    };
    assert!(matches!(
        Emulator::start(bad).await,
        Err(EmulatorError::Fault { .. })
    ));
    let t = T::new(a).await;
    let id = t.id_of("f.bin").await;
    let url = t.presign(&id).await;

    // storage_status 503 once, then normal.
    let r = t.get(&url, Some("bytes=0-9")).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(s3_code(r).await, "SlowDown");
    assert_eq!(
        t.get(&url, Some("bytes=0-9")).await.status(),
        StatusCode::PARTIAL_CONTENT
    );

    // short_body: full Content-Length, fewer bytes.
    let add = |f: Value| t.control("/_emulator/faults", Some(f));
    assert_eq!(
        add(serde_json::json!({"kind": "short_body", "count": 1}))
            .await
            .status(),
        StatusCode::CREATED
    );
    let r = t.get(&url, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.content_length(), Some(data.len() as u64));
    assert!(r.bytes().await.is_err());

    // reset: the body fails mid-way.
    add(serde_json::json!({"kind": "reset", "count": 1})).await;
    let mut r = t.get(&url, Some("bytes=0-")).await;
    let mut got = 0;
    let failed = loop {
        match r.chunk().await {
            Ok(Some(c)) => got += c.len(),
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    assert!(failed && got < data.len(), "{got}");

    // expire: early 403 on a valid URL.
    add(serde_json::json!({"kind": "expire", "count": 1})).await;
    let r = t.get(&url, Some("bytes=0-9")).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("Request has expired"));

    // stall: headers first, body after the pause.
    add(serde_json::json!({"kind": "stall", "seconds": 0.5, "count": 1})).await;
    let t0 = std::time::Instant::now();
    let r = t.get(&url, Some("bytes=0-9")).await;
    assert!(t0.elapsed() < Duration::from_millis(400));
    assert!(r.bytes().await.unwrap()[..] == data[..10]);
    assert!(t0.elapsed() >= Duration::from_millis(500));

    // change as a fault: served normally, with new content and ETag.
    let before = t.get(&url, Some("bytes=0-0")).await;
    let etag = header(&before, "etag").unwrap().to_owned();
    add(serde_json::json!({"kind": "change", "count": 1, "doc": id})).await;
    let r = t.get(&url, Some("bytes=0-0")).await;
    assert_ne!(header(&r, "etag").unwrap(), etag);
    assert_eq!(r.bytes().await.unwrap()[0], data[0] ^ 1);

    // api_status 402 on the POST, restricted to one document.
    add(serde_json::json!({"kind": "api_status", "route": "post", "status": 402, "doc": id})).await;
    let listed: Value = t
        .http
        .get(t.url("/_emulator/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let r = t.post_uri(&id).await;
    assert_eq!(r.status(), StatusCode::PAYMENT_REQUIRED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], 402);
    assert!(v["message"].as_str().unwrap().contains("premium"));
    assert_eq!(
        t.post_uri("0000000000000000").await.status(),
        StatusCode::NOT_FOUND
    );
    let r = t
        .http
        .delete(t.url("/_emulator/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(t.post_uri(&id).await.status(), StatusCode::OK);
    let r = add(serde_json::json!({"kind": "stall"})).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let s = t.emu.stats();
    for (kind, n) in [
        ("storage_status", 1),
        ("short_body", 1),
        ("reset", 1),
        ("expire", 1),
        ("stall", 1),
        ("change", 1),
        ("api_status", 1),
    ] {
        assert_eq!(s.faults_injected.get(kind), Some(&n), "{kind}");
    }
    assert_eq!(s.expired_403, 1);
}

#[tokio::test]
async fn latency_and_bandwidth() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(100_000, 3);
    write(dir.path(), "f.bin", &data);
    let mut a = args(Some(dir.path()));
    a.latency_ms = 200;
    a.bandwidth = Some(200_000);
    let t = T::new(a).await;
    let url = t.presign(&t.id_of("f.bin").await).await;
    let t0 = std::time::Instant::now();
    let r = t.get(&url, None).await;
    assert!(t0.elapsed() >= Duration::from_millis(200));
    assert!(r.bytes().await.unwrap()[..] == data[..]);
    // 100 kB at 200 kB/s: about half a second of body.
    let elapsed = t0.elapsed();
    assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}

#[tokio::test]
async fn demo_documents() {
    let t = T::new(args(None)).await;
    let docs = t.listing().await;
    assert!(docs.iter().any(|d| d["filename"] == "README.txt"));
    assert!(docs.iter().any(|d| d["filename"] == "Röö's report.txt"));
    let id = t.id_of("deep_run.fastq").await;
    let doc = &t.emu.shared.store.get(&id).unwrap().clone();
    let url = t.presign(&id).await;
    let r = t.get(&url, Some("bytes=1000000-1300000")).await;
    let want = doc.open().unwrap().read_at(1_000_000, 300_001, 0).unwrap();
    assert!(r.bytes().await.unwrap() == want);
    let readme = t.presign(&t.id_of("README.txt").await).await;
    let text = t.get(&readme, None).await.text().await.unwrap();
    assert!(text.contains("ocxfs demo account"));
}

#[tokio::test]
async fn bad_docs_dir_is_an_error() {
    let err = Emulator::start(args(Some(Path::new("/nonexistent/ocxfs"))))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, EmulatorError::Docs { .. }), "{err}");
    let mut a = args(None);
    a.manifest = Some("/tmp/m.json".into());
    assert!(matches!(
        Emulator::start(a).await,
        Err(EmulatorError::Args(_))
    ));
}
