//! The hostile server answers what its rules say and records what it gets.

use ocxfs_emulator::hostile::{HostileServer, Repeat, Rule};
use ocxfs_emulator::{DEMO_API_KEY, Emulator, EmulatorArgs};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Send and read a JSON answer.
async fn json(req: reqwest::RequestBuilder) -> serde_json::Value {
    req.send().await.unwrap().json().await.unwrap()
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[test]
fn scripted_answers_repeat_count_and_run_out() {
    let rt = runtime();
    let hostile = HostileServer::start(None).unwrap();
    let base = hostile.base_url().to_owned();
    hostile.add_rule(
        Rule::answer("GET", "/api/v1/documents", 200)
            .header("Link", "<{base}/api/v1/documents?page={n}>; rel=\"next\"")
            .body("[")
            .repeat(Repeat {
                item: "{\"id\": \"d{i}\"}".into(),
                separator: ",".into(),
                count: 3,
                suffix: "]".into(),
            })
            .times(2),
    );
    hostile.add_rule(Rule::redirect("POST", "/x", "http://127.0.0.1:9/elsewhere"));
    let http = client();
    rt.block_on(async {
        for n in 1..=2 {
            let r = http
                .get(format!("{base}/api/v1/documents"))
                .header("X-API-Key", "k")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(
                r.headers()["link"].to_str().unwrap(),
                format!("<{base}/api/v1/documents?page={n}>; rel=\"next\"")
            );
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(
                body,
                serde_json::json!([{"id": "d0"}, {"id": "d1"}, {"id": "d2"}])
            );
        }
        // The rule ran out: no upstream, so 404.
        let r = http
            .get(format!("{base}/api/v1/documents"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let r = http.post(format!("{base}/x")).send().await.unwrap();
        assert_eq!(r.status(), 302);
        assert_eq!(r.headers()["location"], "http://127.0.0.1:9/elsewhere");
    });
    let seen = hostile.requests();
    assert_eq!(seen.len(), 4);
    assert!(seen[0].api_key && !seen[2].api_key);
    assert_eq!(
        seen.iter().map(|s| s.rule).collect::<Vec<_>>(),
        [Some(0), Some(0), None, Some(1)]
    );
    assert_eq!(hostile.count("GET", "/api/v1/documents"), 3);
}

#[test]
fn a_body_can_be_cut_short() {
    let rt = runtime();
    let hostile = HostileServer::start(None).unwrap();
    hostile.add_rule(
        Rule::answer("GET", "/big", 200)
            .header("Content-Length", "1000")
            .body("x".repeat(1000))
            .abort_after(10),
    );
    let url = format!("{}/big", hostile.base_url());
    // The cut comes before or after the head has left: an error either way.
    let result = rt.block_on(async {
        match client().get(url).send().await {
            Ok(answer) => answer.bytes().await,
            Err(e) => Err(e),
        }
    });
    assert!(result.is_err(), "a cut body is an error: {result:?}");
}

#[test]
fn rules_come_over_http_and_the_rest_goes_upstream() {
    let rt = runtime();
    let emulator = rt.block_on(Emulator::start(EmulatorArgs::demo())).unwrap();
    let hostile = HostileServer::start(Some(emulator.base_url())).unwrap();
    let base = hostile.base_url().to_owned();
    let http = client();
    rt.block_on(async {
        let rules = serde_json::json!([
            {"method": "GET", "path": "/storage/", "prefix": true, "status": 403,
             "body": "<Error><Message>Request has expired</Message></Error>", "times": 1}
        ]);
        let put = http
            .put(format!("{base}/_hostile/rules"))
            .json(&rules)
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 204);
        let docs = json(
            http.get(format!("{base}/api/v1/documents"))
                .header("X-API-Key", DEMO_API_KEY),
        )
        .await;
        let id = docs[0]["$uri"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap();
        let uri = json(
            http.post(format!("{base}/api/v1/documents/{id}/download_uri"))
                .header("X-API-Key", DEMO_API_KEY),
        )
        .await;
        let url = uri["download_uri"].as_str().unwrap();
        assert!(url.starts_with(&base), "{url} leads back through {base}");
        let first = http.get(url).send().await.unwrap();
        assert_eq!(first.status(), 403, "the scripted expiry");
        let second = http.get(url).send().await.unwrap();
        assert_eq!(second.status(), 200, "the upstream's storage");
        let seen = json(http.get(format!("{base}/_hostile/requests"))).await;
        assert_eq!(
            seen.as_array().unwrap().len(),
            4,
            "control requests are not recorded: {seen:?}"
        );
    });
    assert_eq!(emulator.stats().posts_total, 1);
    drop(hostile);
    rt.block_on(emulator.shutdown());
}
