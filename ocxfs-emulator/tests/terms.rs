//! Download terms end to end: the manifest and the control route set them,
//! the listing shows them, the `download_uri` POST enforces them.

use std::time::Duration;

mod common;

use common::id_of_uri;
use ocxfs_emulator::{DEMO_API_KEY, Emulator, EmulatorArgs};
use serde_json::{Value, json};

struct Account {
    emu: Emulator,
    http: reqwest::Client,
}

impl Account {
    async fn start(args: EmulatorArgs) -> Account {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Account {
            emu: Emulator::start(args).await.unwrap(),
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.emu.base_url())
    }

    async fn documents(&self) -> Vec<Value> {
        let r = self.http.get(self.url("/api/v1/documents?per_page=1000"));
        let r = r.header("X-API-Key", DEMO_API_KEY).send().await.unwrap();
        r.json::<Value>().await.unwrap().as_array().unwrap().clone()
    }

    async fn post(&self, id: &str) -> u16 {
        let r = self
            .http
            .post(self.url(&format!("/api/v1/documents/{id}/download_uri")));
        let r = r.header("X-API-Key", DEMO_API_KEY).send().await.unwrap();
        r.status().as_u16()
    }

    async fn set_terms(&self, id: &str, terms: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(&format!("/_emulator/documents/{id}/terms")));
        let r = r.json(&terms).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }
}

#[tokio::test]
async fn the_manifest_sets_terms_the_listing_shows_and_the_post_enforces() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    std::fs::create_dir(&docs).unwrap();
    for name in ["two-left.txt", "expired.txt", "free.txt"] {
        std::fs::write(docs.join(name), name).unwrap();
    }
    let manifest = dir.path().join("manifest.json");
    let entries = json!([
        {"path": "two-left.txt", "id": "0000000000000002", "downloads_remaining": 2},
        {"path": "expired.txt", "id": "0000000000000003", "downloads_remaining": 5,
         "valid_until": "2020-01-01T00:00:00+00:00"},
        {"path": "free.txt", "id": "0000000000000004"},
    ]);
    std::fs::write(&manifest, entries.to_string()).unwrap();
    let mut args = EmulatorArgs::demo();
    args.docs = Some(docs);
    args.manifest = Some(manifest);
    let a = Account::start(args).await;

    let listed = a.documents().await;
    let by_id = |i: &str| listed.iter().find(|d| id_of_uri(d) == i).unwrap().clone();
    assert_eq!(by_id("0000000000000002")["downloads_remaining"], 2);
    assert_eq!(
        by_id("0000000000000003")["valid_until"],
        "2020-01-01T00:00:00+00:00"
    );
    assert_eq!(
        by_id("0000000000000004")["downloads_remaining"],
        Value::Null
    );
    assert_eq!(by_id("0000000000000004")["valid_until"], Value::Null);

    assert_eq!(a.post("0000000000000002").await, 200);
    assert_eq!(a.post("0000000000000002").await, 200);
    assert_eq!(a.post("0000000000000002").await, 402);
    assert_eq!(a.post("0000000000000003").await, 403);
    assert_eq!(a.post("0000000000000004").await, 200);
    let after = a.documents().await;
    let left =
        |i: &str| after.iter().find(|d| id_of_uri(d) == i).unwrap()["downloads_remaining"].clone();
    assert_eq!(left("0000000000000002"), 0);
    // A refused POST uses no download.
    assert_eq!(left("0000000000000003"), 5);
    // Every POST is counted, refused or not.
    assert_eq!(a.emu.stats().posts_total, 5);
}

#[tokio::test]
async fn the_control_route_changes_terms_and_delays_posts() {
    let mut args = EmulatorArgs::demo();
    args.generate_documents = 2;
    let a = Account::start(args).await;
    let listed = a.documents().await;
    let (first, second) = (id_of_uri(&listed[0]), id_of_uri(&listed[1]));

    let (status, terms) = a.set_terms(&first, json!({"downloads_remaining": 0})).await;
    assert_eq!(
        (status, terms["downloads_remaining"].clone()),
        (200, json!(0))
    );
    assert_eq!(a.post(&first).await, 402);
    let (status, _) = a
        .set_terms(&first, json!({"downloads_remaining": null}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(a.post(&first).await, 200);

    let (status, _) = a
        .set_terms(&first, json!({"downloads_remaining": "many"}))
        .await;
    assert_eq!(status, 400);
    let (status, _) = a.set_terms("ffffffffffffffff", json!({})).await;
    assert_eq!(status, 404);

    // A delayed POST is counted on arrival and has not answered a second later.
    let (status, _) = a.set_terms(&second, json!({"post_delay_ms": 60_000})).await;
    assert_eq!(status, 200);
    let before = a.emu.stats().posts_total;
    let slow = tokio::time::timeout(Duration::from_secs(1), a.post(&second)).await;
    assert!(slow.is_err(), "the POST answered despite its delay");
    assert_eq!(a.emu.stats().posts_total, before + 1);
    a.set_terms(&second, json!({"post_delay_ms": 0})).await;
    assert_eq!(a.post(&second).await, 200);
}
