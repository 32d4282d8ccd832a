//! The emulator in-process: a real server on port 0 driven over HTTP with
//! reqwest, through the crate's public API only.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

mod common;

use common::id_of_uri;
use ocxfs_emulator::{DEMO_API_KEY, Emulator, EmulatorArgs, EmulatorError, Stats};

fn args(docs: Option<&Path>) -> EmulatorArgs {
    EmulatorArgs {
        docs: docs.map(Path::to_path_buf),
        ..EmulatorArgs::demo()
    }
}

/// Deterministic content, different at every offset (xorshift).
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
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

    /// The `$uri` of the account the key belongs to.
    async fn account_uri(&self) -> String {
        let account: Value = self.api("/api/v1/account").await.json().await.unwrap();
        account["$uri"].as_str().unwrap().to_owned()
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
        self.post_download("documents", id).await
    }

    /// `POST /api/v1/{collection}/{id}/download_uri` with the key.
    async fn post_download(&self, collection: &str, id: &str) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/api/v1/{collection}/{id}/download_uri")))
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
        self.get_if_match(url, range, None).await
    }

    async fn get_if_match(
        &self,
        url: &str,
        range: Option<&str>,
        etag: Option<&str>,
    ) -> reqwest::Response {
        let mut rq = self.http.get(url);
        if let Some(r) = range {
            rq = rq.header("Range", r);
        }
        if let Some(e) = etag {
            rq = rq.header("If-Match", e);
        }
        rq.send().await.unwrap()
    }

    /// A control endpoint's JSON answer (no key needed).
    async fn control_get<J: serde::de::DeserializeOwned>(&self, path: &str) -> J {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
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
        id_of_uri(docs.iter().find(|d| d["filename"] == filename).unwrap())
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
    let (items, pages) = t.all_pages("/api/v1/documents?per_page=50").await;
    assert_eq!(pages, 3);
    let ids: Vec<String> = items
        .iter()
        .map(|d| d["$uri"].as_str().unwrap().to_owned())
        .collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 120);
    // The first page tells the total and links the last page, absolutely.
    let r = t.api("/api/v1/documents?per_page=50").await;
    assert_eq!(header(&r, "x-total-count"), Some("120"));
    let link = header(&r, "link").unwrap().to_owned();
    assert!(link.contains("page=3&per_page=50>; rel=\"last\""));
    assert!(link.starts_with("<http://127.0.0.1:"));
    assert_eq!(r.json::<Vec<Value>>().await.unwrap().len(), 50);
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
    assert_eq!(s.api_requests.list_documents, 6);
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
    let r = t.get_if_match(&url, Some("bytes=0-9"), Some(&etag)).await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert!(r.bytes().await.unwrap()[..] == data[..10]);
    expected_bytes += 10;

    // Change: old URL serves new bytes (XOR 1) with a new ETag; old ETag -> 412.
    let r = t
        .control(&format!("/_emulator/documents/{id}/change"), None)
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["generation"], 1);
    let r = t.get_if_match(&url, Some("bytes=0-9"), Some(&etag)).await;
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
    let http: Stats = t.control_get("/_emulator/stats").await;
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
    let listed: Value = t.control_get("/_emulator/faults").await;
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
    let url = t.presign(&id).await;
    let r = t.get(&url, Some("bytes=1000000-1300000")).await;
    let wider = t.get(&url, Some("bytes=0-1399999")).await;
    let wider = wider.bytes().await.unwrap();
    assert_eq!(wider.len(), 1_400_000);
    assert!(r.bytes().await.unwrap() == wider[1_000_000..=1_300_000]);
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

impl T {
    async fn api_with(&self, path: &str, extra: &[(&str, &str)]) -> reqwest::Response {
        let mut rq = self
            .http
            .get(self.url(path))
            .header("X-API-Key", DEMO_API_KEY);
        for (k, v) in extra {
            rq = rq.header(*k, *v);
        }
        rq.send().await.unwrap()
    }

    async fn post_sample(&self, id: &str) -> reqwest::Response {
        self.post_download("samples", id).await
    }

    /// Every item of a listing, following `Link` (page numbers) from `path`;
    /// every page states the same total, and the items add up to it.
    async fn all_pages(&self, path: &str) -> (Vec<Value>, usize) {
        let mut url = self.url(path);
        let mut items = Vec::new();
        let mut requests = 0;
        let mut total = None;
        loop {
            let r = self
                .http
                .get(&url)
                .header("X-API-Key", DEMO_API_KEY)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            requests += 1;
            let this_total = header(&r, "x-total-count").map(str::to_owned);
            assert!(this_total.is_some(), "page {requests} has X-Total-Count");
            assert!(total.is_none() || total == this_total, "page {requests}");
            total = this_total;
            let link = header(&r, "link").map(str::to_owned);
            items.extend(r.json::<Vec<Value>>().await.unwrap());
            let Some(link) = link else { break };
            let next = link
                .split(", ")
                .find(|l| l.ends_with("rel=\"next\""))
                .unwrap();
            url = next[1..next.find('>').unwrap()].to_owned();
        }
        assert_eq!(total, Some(items.len().to_string()));
        (items, requests)
    }

    /// Every sample through cursor pagination; also checks the headers.
    async fn all_by_cursor(&self, per_page: usize) -> (Vec<Value>, usize) {
        let mut cursor: Option<String> = None;
        let mut items = Vec::new();
        let mut pages = 0;
        loop {
            let path = match &cursor {
                None => format!("/api/v1/samples?per_page={per_page}"),
                Some(c) => format!("/api/v1/samples?per_page={per_page}&cursor={c}"),
            };
            let r = self
                .api_with(&path, &[("X-Pagination-Style", "cursor")])
                .await;
            assert_eq!(r.status(), StatusCode::OK);
            assert!(header(&r, "link").is_none());
            let total: usize = header(&r, "x-total-count").unwrap().parse().unwrap();
            cursor = header(&r, "x-next-cursor").map(str::to_owned);
            let page: Vec<Value> = r.json().await.unwrap();
            pages += 1;
            items.extend(page);
            if cursor.is_none() {
                assert_eq!(items.len(), total);
                break;
            }
        }
        (items, pages)
    }
}

fn sha(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(data).to_vec()
}

/// The key set of the real API's sample objects.
fn fixture_sample_keys() -> Vec<String> {
    let v = ocxfs_emulator::fixtures::json("samples.json");
    v[0].as_object().unwrap().keys().cloned().collect()
}

#[tokio::test]
async fn samples_listing_by_page_and_by_cursor() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..25 {
        write(
            dir.path(),
            &format!("run{}/s{i:02}.fastq.gz", i % 3),
            b"ACGT",
        );
    }
    let mut a = args(None);
    a.samples = Some(dir.path().to_path_buf());
    let t = T::new(a).await;

    // Page numbers, exactly like documents.
    let r = t.api("/api/v1/samples?per_page=10").await;
    assert_eq!(header(&r, "x-total-count"), Some("25"));
    assert!(
        header(&r, "link")
            .unwrap()
            .contains("/api/v1/samples?page=2&per_page=10")
    );
    assert!(header(&r, "x-next-cursor").is_none());
    let (by_page, requests) = t.all_pages("/api/v1/samples?per_page=10").await;
    assert_eq!((by_page.len(), requests), (25, 3));

    // Cursors: 3 pages, every id once, no cursor after the last page.
    let (by_cursor, pages) = t.all_by_cursor(10).await;
    assert_eq!(pages, 3);
    let ids: Vec<String> = by_cursor.iter().map(id_of_uri).collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 25);
    assert_eq!(by_cursor, by_page);
    let r = t
        .api_with(
            "/api/v1/samples?cursor=bogus",
            &[("X-Pagination-Style", "cursor")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Item shape: exactly the fixture's keys; defaults for plain files.
    let keys = fixture_sample_keys();
    for s in &by_page {
        let mine: Vec<String> = s.as_object().unwrap().keys().cloned().collect();
        assert_eq!(mine, keys);
        assert_eq!(s["status"], "available");
        assert_eq!(s["visibility"], "private");
        assert_eq!(s["project"], Value::Null);
        assert_eq!(s["tags"], serde_json::json!([]));
        assert_eq!(s["size"], 4);
        assert!(s["filename"].as_str().unwrap().ends_with(".fastq.gz"));
        assert_eq!(s["owner"]["$ref"], t.account_uri().await.as_str());
        assert!(
            s["primary_classification"]["$ref"]
                .as_str()
                .unwrap()
                .starts_with("/api/v1/classifications/")
        );
    }
    // Ids: a stable hash of "samples/" + relative path, never a document id.
    let first = &ids[0];
    assert_eq!(first.len(), 16);
    assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));

    // One sample; documents and samples do not see each other's ids.
    let r = t.api(&format!("/api/v1/samples/{first}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap(), by_page[0]);
    assert_eq!(
        t.api(&format!("/api/v1/documents/{first}")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(t.post_uri(first).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(t.listing().await.len(), 0);

    // Without a key: empty listings (both styles), 404 get, 401 POST.
    let anon = |path: &str| t.http.get(t.url(path));
    let r = anon("/api/v1/samples").send().await.unwrap();
    assert_eq!(header(&r, "x-total-count"), Some("0"));
    assert_eq!(r.json::<Value>().await.unwrap(), serde_json::json!([]));
    let r = anon("/api/v1/samples")
        .header("X-Pagination-Style", "cursor")
        .send()
        .await
        .unwrap();
    assert!(header(&r, "x-next-cursor").is_none());
    assert_eq!(r.json::<Value>().await.unwrap(), serde_json::json!([]));
    for path in ["/api/v1/projects", "/api/v1/tags"] {
        let r = anon(path).send().await.unwrap();
        assert_eq!(r.json::<Value>().await.unwrap(), serde_json::json!([]));
    }
    let r = anon(&format!("/api/v1/samples/{first}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = t
        .http
        .post(t.url(&format!("/api/v1/samples/{first}/download_uri")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let s = t.emu.stats();
    assert_eq!(s.api_requests.list_samples, 1 + 3 + 3 + 1 + 2);
    assert_eq!(s.api_requests.get_sample, 2);
    assert_eq!(s.api_requests.list_projects, 1);
    assert_eq!(s.api_requests.list_tags, 1);
    assert_eq!(s.api_requests.list_documents, 1);
    assert_eq!(s.posts[first], 2);
}

#[tokio::test]
async fn samples_manifest_projects_tags_and_downloads() {
    let dir = tempfile::tempdir().unwrap();
    let samples = dir.path().join("samples");
    let data = content(2 * 1024 * 1024 + 77, 5);
    write(&samples, "a/big_R1.fastq.gz", &data);
    write(&samples, "b/small.fastq", b"@r1\nACGT\n+\nFFFF\n");
    let manifest = dir.path().join("samples.json");
    std::fs::write(
        &manifest,
        serde_json::to_vec(&serde_json::json!({
            "projects": [
                {"id": "00000000000000p1", "name": "Project one", "project_name": "proj_one"},
                {"name": "Second", "project_name": null},
            ],
            "tags": [{"id": "000000000000tag1", "name": "isolate"}, {"name": "WGS"}],
            "samples": [
                {"path": "a/big_R1.fastq.gz", "project": "00000000000000p1", "tags": ["000000000000tag1", "WGS"], "id": "00000000000big01"},
                {"path": "b/small.fastq", "filename": "Röö's small.fastq", "visibility": "shared", "project": "Second", "null_size": true},
                {"path": null, "filename": "pending.fastq.gz", "status": "awaiting_data"},
                {"path": null, "status": "importing", "id": "0000000importing"},
            ],
        }))
        .unwrap(),
    )
    .unwrap();
    let mut a = args(None);
    a.samples = Some(samples.clone());
    a.samples_manifest = Some(manifest.clone());
    let t = T::new(a.clone()).await;

    let (projects, _) = t.all_pages("/api/v1/projects?per_page=1").await;
    assert_eq!(projects.len(), 2);
    assert_eq!(
        projects[0],
        serde_json::json!({
            "$uri": "/api/v1/projects/00000000000000p1",
            "name": "Project one",
            "project_name": "proj_one",
            "description": null,
            "owner": {"$ref": t.account_uri().await},
            "public": false,
            "permissions": [],
        })
    );
    assert_eq!(projects[1]["project_name"], Value::Null);
    let second = id_of_uri(&projects[1]);
    assert_eq!(second.len(), 16);
    let r = t.api("/api/v1/tags").await;
    assert_eq!(header(&r, "x-total-count"), Some("2"));
    let tags: Vec<Value> = r.json().await.unwrap();
    assert_eq!(
        tags[0],
        serde_json::json!({"$uri": "/api/v1/tags/000000000000tag1", "name": "isolate"})
    );
    let wgs = id_of_uri(&tags[1]);

    let (all, _) = t.all_pages("/api/v1/samples?per_page=1000").await;
    assert_eq!(all.len(), 4);
    let find = |id: &str| all.iter().find(|s| id_of_uri(s) == id).unwrap().clone();
    let big = find("00000000000big01");
    assert_eq!(big["project"]["$ref"], "/api/v1/projects/00000000000000p1");
    assert_eq!(
        big["tags"],
        serde_json::json!([
            {"$ref": "/api/v1/tags/000000000000tag1"},
            {"$ref": format!("/api/v1/tags/{wgs}")},
        ])
    );
    assert_eq!(big["size"], data.len());
    let small = all
        .iter()
        .find(|s| s["filename"] == "Röö's small.fastq")
        .unwrap();
    assert_eq!(small["visibility"], "shared");
    assert_eq!(small["size"], Value::Null);
    assert_eq!(
        small["project"]["$ref"],
        format!("/api/v1/projects/{second}").as_str()
    );
    let pending = all
        .iter()
        .find(|s| s["filename"] == "pending.fastq.gz")
        .unwrap();
    assert_eq!(pending["status"], "awaiting_data");
    assert_eq!(pending["size"], Value::Null);
    let importing = find("0000000importing");
    assert_eq!(importing["filename"], Value::Null);
    assert_eq!(importing["status"], "importing");

    // Not available: 409, counted.
    for id in [id_of_uri(pending), "0000000importing".to_owned()] {
        let r = t.post_sample(&id).await;
        assert_eq!(r.status(), StatusCode::CONFLICT);
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            serde_json::json!({"message": "Sample is not available for download", "status": 409})
        );
    }
    assert_eq!(
        t.post_sample("ffffffffffffffff").await.status(),
        StatusCode::NOT_FOUND
    );

    // POST and storage: the same answer and behaviour as documents.
    let r = t.post_sample("00000000000big01").await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["expires_in_hours"], 1);
    let url = v["download_uri"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!(
        "{}/storage/00000000000big01/big_R1.fastq.gz?X-Amz-Expires=",
        t.emu.base_url()
    )));
    let r = t.get(&url, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let etag = header(&r, "etag").unwrap().to_owned();
    assert!(r.bytes().await.unwrap()[..] == data[..]);
    let r = t.get(&url, Some("bytes=1048000-1049999")).await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header(&r, "content-range"),
        Some(format!("bytes 1048000-1049999/{}", data.len()).as_str())
    );
    assert!(r.bytes().await.unwrap()[..] == data[1_048_000..1_050_000]);
    let r = t.get_if_match(&url, None, Some("\"nope\"")).await;
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    // A storage fault naming the sample id.
    t.control(
        "/_emulator/faults",
        Some(serde_json::json!({"kind": "storage_status", "status": 500, "count": 1, "doc": "00000000000big01"})),
    )
    .await;
    let r = t.get(&url, Some("bytes=0-0")).await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(s3_code(r).await, "InternalError");
    // Changing a sample works like a document change.
    let r = t
        .control("/_emulator/samples/00000000000big01/change", None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = t.get(&url, Some("bytes=0-0")).await;
    assert_ne!(header(&r, "etag").unwrap(), etag);
    assert_eq!(r.bytes().await.unwrap()[0], data[0] ^ 1);
    let s = t.emu.stats();
    assert_eq!(s.posts["00000000000big01"], 1);
    assert_eq!(s.posts["0000000importing"], 1);
    assert_eq!(s.posts_total, 4);

    // Manifest errors.
    std::fs::write(&manifest, r#"{"samples": [{"path": "nope.fastq"}]}"#).unwrap();
    assert!(matches!(
        Emulator::start(a.clone()).await,
        Err(EmulatorError::Manifest(_))
    ));
    std::fs::write(
        &manifest,
        r#"{"samples": [{"path": null, "project": "missing"}]}"#,
    )
    .unwrap();
    let err = Emulator::start(a.clone()).await.err().unwrap();
    assert!(err.to_string().contains("missing"), "{err}");
    std::fs::write(
        &manifest,
        r#"{"samples": [{"path": null, "status": "ready"}]}"#,
    )
    .unwrap();
    assert!(Emulator::start(a.clone()).await.is_err());
    // A manifest alone: samples without content.
    std::fs::write(
        &manifest,
        r#"{"samples": [{"path": null, "filename": "later.fastq", "status": "importing"}]}"#,
    )
    .unwrap();
    a.samples = None;
    let t = T::new(a).await;
    assert_eq!(t.all_pages("/api/v1/samples").await.0.len(), 1);
    assert_eq!(t.listing().await.len(), 0);
}

#[tokio::test]
async fn storage_base_urls() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "plain.txt", b"x");
    write(dir.path(), "sub dir/Röö's report #1.pdf", b"y");
    write(dir.path(), "samples/s1.fastq", b"z");
    let mut a = args(Some(dir.path()));
    a.storage_base = Some("http://127.0.0.1:9/files/".into());
    a.samples = Some(dir.path().join("samples"));
    a.generate_documents = 2;
    let t = T::new(a.clone()).await;
    let check = |url: &str, path: &str| {
        let (loc, query) = url.split_once('?').unwrap();
        assert_eq!(loc, format!("http://127.0.0.1:9/files/{path}"));
        let q: Vec<&str> = query
            .split('&')
            .map(|p| p.split('=').next().unwrap())
            .collect();
        assert_eq!(q, ["X-Amz-Expires", "X-Amz-Serial", "X-Amz-Signature"]);
    };
    check(&t.presign(&t.id_of("plain.txt").await).await, "plain.txt");
    check(
        &t.presign(&t.id_of("Röö's report #1.pdf").await).await,
        "sub%20dir/R%C3%B6%C3%B6%27s%20report%20%231.pdf",
    );
    // A sample whose file lies under --docs is served from there too.
    let (samples, _) = t.all_pages("/api/v1/samples").await;
    let r = t.post_sample(&id_of_uri(&samples[0])).await;
    let v: Value = r.json().await.unwrap();
    check(v["download_uri"].as_str().unwrap(), "samples/s1.fastq");
    // Generated documents have no file: emulator storage.
    let url = t.presign(&t.id_of("report_00000.pdf").await).await;
    assert!(url.starts_with(&format!("{}/storage/", t.emu.base_url())));
    assert_eq!(t.get(&url, None).await.status(), StatusCode::OK);
    // POSTs are still counted.
    assert_eq!(t.emu.stats().posts_total, 4);

    // Without --docs it is an argument error.
    let mut b = args(None);
    b.storage_base = Some("http://127.0.0.1:9".into());
    assert!(matches!(
        Emulator::start(b).await,
        Err(EmulatorError::Args(_))
    ));
    a.storage_base = Some("ftp://x".into());
    assert!(matches!(
        Emulator::start(a).await,
        Err(EmulatorError::Args(_))
    ));
}

#[tokio::test]
async fn generated_accounts() {
    let mut a = args(None);
    a.generate_documents = 10_000;
    a.generate_samples = 10_000;
    let t = T::new(a.clone()).await;

    // The server's part: every page fetched as raw bytes (parsing excluded).
    let t0 = std::time::Instant::now();
    let mut raw_bytes = 0;
    for kind in ["documents", "samples"] {
        for page in 1..=10 {
            let r = t
                .api(&format!("/api/v1/{kind}?per_page=1000&page={page}"))
                .await;
            assert_eq!(header(&r, "link").is_some(), page < 10);
            raw_bytes += r.bytes().await.unwrap().len();
        }
    }
    let elapsed = t0.elapsed();
    eprintln!(
        "listing 10,000 documents + 10,000 samples (20 pages, {raw_bytes} bytes): {elapsed:?}"
    );
    // Generous for unoptimised test builds; well under 0.1 s in release.
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    let (docs, doc_requests) = t.all_pages("/api/v1/documents?per_page=1000").await;
    let (samples, sample_requests) = t.all_pages("/api/v1/samples?per_page=1000").await;
    assert_eq!((docs.len(), samples.len()), (10_000, 10_000));
    assert_eq!((doc_requests, sample_requests), (10, 10));
    let t0 = std::time::Instant::now();
    let (by_cursor, pages) = t.all_by_cursor(1000).await;
    eprintln!("listing 10,000 samples by cursor: {:?}", t0.elapsed());
    assert_eq!(pages, 10);
    assert_eq!(by_cursor, samples);

    let mut ids: Vec<String> = docs.iter().chain(&samples).map(id_of_uri).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20_000);
    let mut names: Vec<&str> = docs
        .iter()
        .map(|d| d["filename"].as_str().unwrap())
        .collect();
    names.sort();
    let distinct = {
        let mut n = names.clone();
        n.dedup();
        n.len()
    };
    assert_eq!(distinct, 9_500);
    assert!(names.contains(&"report_00000.pdf"));
    assert!(
        samples
            .iter()
            .any(|s| s["filename"] == "sample_00021_R1.fastq.gz")
    );
    let importing: Vec<&Value> = samples
        .iter()
        .filter(|s| s["status"] == "importing")
        .collect();
    assert!(
        (100..=300).contains(&importing.len()),
        "{}",
        importing.len()
    );
    for s in &samples {
        let size = s["size"].as_u64().unwrap();
        assert!((1024..=1024 * 1024).contains(&size));
        assert!(s["tags"].as_array().unwrap().len() <= 3);
        assert!(s["project"]["$ref"].is_string());
    }
    let (projects, _) = t.all_pages("/api/v1/projects").await;
    let (tags, _) = t.all_pages("/api/v1/tags").await;
    assert_eq!((projects.len(), tags.len()), (10, 20));
    assert_eq!(
        t.post_sample(&id_of_uri(importing[0])).await.status(),
        StatusCode::CONFLICT
    );

    // Content: exact length, stable across restarts and reads.
    let other = T::new(a).await;
    let available = samples.iter().find(|s| s["status"] == "available").unwrap();
    for (post, id, size) in [
        (
            false,
            id_of_uri(&docs[123]),
            docs[123]["size"].as_u64().unwrap(),
        ),
        (
            true,
            id_of_uri(available),
            available["size"].as_u64().unwrap(),
        ),
    ] {
        let mut hashes = Vec::new();
        for emu in [&t, &other] {
            let url = if post {
                let v: Value = emu.post_sample(&id).await.json().await.unwrap();
                v["download_uri"].as_str().unwrap().to_owned()
            } else {
                emu.presign(&id).await
            };
            let body = emu.get(&url, None).await.bytes().await.unwrap();
            assert_eq!(body.len() as u64, size);
            let tail = emu
                .get(&url, Some("bytes=-100"))
                .await
                .bytes()
                .await
                .unwrap();
            assert!(tail[..] == body[body.len() - 100..]);
            hashes.push(sha(&body));
        }
        assert_eq!(hashes[0], hashes[1]);
    }
}

#[tokio::test]
async fn add_and_delete_objects() {
    let mut a = args(None);
    a.generate_samples = 30;
    let t = T::new(a).await;
    assert_eq!(t.listing().await.len(), 0);

    let r = t
        .control(
            "/_emulator/documents",
            Some(serde_json::json!({"filename": "new report.txt", "content": "hello, Röö\n"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 16);
    let docs = t.listing().await;
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["filename"], "new report.txt");
    assert_eq!(docs[0]["size"], "hello, Röö\n".len());
    let url = t.presign(&id).await;
    assert_eq!(
        t.get(&url, None).await.text().await.unwrap(),
        "hello, Röö\n"
    );
    let r = t
        .control(
            "/_emulator/documents",
            Some(serde_json::json!({"content": "no name"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Delete: gone from listing, get, POST and storage.
    let del = |path: String| t.http.delete(t.url(&path)).send();
    assert_eq!(
        del(format!("/_emulator/documents/{id}"))
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(t.listing().await.len(), 0);
    assert_eq!(
        t.api(&format!("/api/v1/documents/{id}")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(t.post_uri(&id).await.status(), StatusCode::NOT_FOUND);
    let r = t.get(&url, None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(s3_code(r).await, "NoSuchKey");
    assert_eq!(
        del(format!("/_emulator/documents/{id}"))
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );

    // Samples: a cursor walk across a deletion still sees every other sample once.
    let (before, _) = t.all_pages("/api/v1/samples").await;
    assert_eq!(before.len(), 30);
    let victim = before
        .iter()
        .find(|s| s["status"] == "available")
        .map(id_of_uri)
        .unwrap();
    let r = t.post_sample(&victim).await;
    let url = r.json::<Value>().await.unwrap()["download_uri"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = t
        .api_with(
            "/api/v1/samples?per_page=10",
            &[("X-Pagination-Style", "cursor")],
        )
        .await;
    let next = header(&r, "x-next-cursor").unwrap().to_owned();
    // The victim is on a later page, or the first: either way it vanishes.
    assert_eq!(
        del(format!("/_emulator/documents/{victim}"))
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        del(format!("/_emulator/samples/{victim}"))
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    let mut seen: Vec<String> = r
        .json::<Vec<Value>>()
        .await
        .unwrap()
        .iter()
        .map(id_of_uri)
        .collect();
    let mut cursor = Some(next);
    while let Some(c) = cursor {
        let r = t
            .api_with(
                &format!("/api/v1/samples?per_page=10&cursor={c}"),
                &[("X-Pagination-Style", "cursor")],
            )
            .await;
        assert_eq!(header(&r, "x-total-count"), Some("29"));
        cursor = header(&r, "x-next-cursor").map(str::to_owned);
        seen.extend(r.json::<Vec<Value>>().await.unwrap().iter().map(id_of_uri));
    }
    let expected: Vec<String> = before
        .iter()
        .map(id_of_uri)
        .filter(|id| *id != victim || seen[..10].contains(id))
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(t.all_pages("/api/v1/samples").await.0.len(), 29);
    assert_eq!(
        t.api(&format!("/api/v1/samples/{victim}")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(t.post_sample(&victim).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(s3_code(t.get(&url, None).await).await, "NoSuchKey");
}

#[tokio::test]
async fn api_status_faults_on_new_routes() {
    let mut a = args(None);
    a.generate_samples = 5;
    a.generate_documents = 1;
    a.faults = vec!["api_status:route=list_samples,status=429,retry_after=3,count=1".into()];
    let t = T::new(a).await;
    let r = t.api("/api/v1/samples").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&r, "retry-after"), Some("3"));
    assert_eq!(r.json::<Value>().await.unwrap()["status"], 429);
    let (samples, _) = t.all_pages("/api/v1/samples").await;
    let ids: Vec<String> = samples
        .iter()
        .filter(|s| s["status"] == "available")
        .map(id_of_uri)
        .collect();
    let add = |f: Value| t.control("/_emulator/faults", Some(f));
    for (route, path) in [
        ("list_projects", "/api/v1/projects"),
        ("list_tags", "/api/v1/tags"),
        ("get_sample", "/api/v1/samples/0000000000000000"),
    ] {
        add(serde_json::json!({"kind": "api_status", "route": route, "status": 500, "count": 1}))
            .await;
        assert_eq!(
            t.api(path).await.status(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "{route}"
        );
        assert_ne!(
            t.api(path).await.status(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "{route}"
        );
    }
    // post_sample restricted to one sample; "post" still means documents.
    add(serde_json::json!({"kind": "api_status", "route": "post_sample", "status": 402, "doc": ids[0]}))
        .await;
    assert_eq!(
        t.post_sample(&ids[0]).await.status(),
        StatusCode::PAYMENT_REQUIRED
    );
    assert_eq!(t.post_sample(&ids[1]).await.status(), StatusCode::OK);
    let doc = t.id_of("report_00000.pdf").await;
    assert_eq!(t.post_uri(&doc).await.status(), StatusCode::OK);
    add(serde_json::json!({"kind": "api_status", "route": "post", "status": 403})).await;
    assert_eq!(t.post_uri(&doc).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(t.post_sample(&ids[1]).await.status(), StatusCode::OK);
    let r = add(serde_json::json!({"kind": "api_status", "route": "list_everything"})).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(t.emu.stats().faults_injected["api_status"], 6);
}

#[tokio::test]
async fn demo_samples() {
    let t = T::new(args(None)).await;
    let (samples, _) = t.all_pages("/api/v1/samples").await;
    assert_eq!(samples.len(), 3);
    let (projects, _) = t.all_pages("/api/v1/projects").await;
    assert_eq!(projects.len(), 1);
    assert_eq!(projects[0]["project_name"], "demo_project");
    let (tags, _) = t.all_pages("/api/v1/tags").await;
    assert_eq!(tags.len(), 2);
    let in_project: Vec<&Value> = samples
        .iter()
        .filter(|s| s["project"].is_object())
        .collect();
    assert_eq!(in_project.len(), 2);
    assert!(
        samples
            .iter()
            .all(|s| !s["tags"].as_array().unwrap().is_empty())
    );
    let v: Value = t
        .post_sample(&id_of_uri(in_project[0]))
        .await
        .json()
        .await
        .unwrap();
    let text = t
        .get(v["download_uri"].as_str().unwrap(), None)
        .await
        .text()
        .await
        .unwrap();
    assert!(text.starts_with("@ocxfs_demo.000000001 length=150\n"));
    assert_eq!(text.len() as u64, in_project[0]["size"].as_u64().unwrap());
    // The demo documents are unchanged.
    assert_eq!(t.listing().await.len(), 9);
}
