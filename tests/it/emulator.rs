//! The emulator over real HTTP: both flavours, uploads, exports and downloads from the second
//! origin, the fault options and every scripted fault kind, and the documented page's own
//! examples (curl, a Python urllib loop) run unchanged apart from the host.

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use avala_pipe::emulator::{
    Emulator, EmulatorError, EmulatorOptions, Fault, FaultEffect, Flavor, Origin, RetryAfter,
    Trigger,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

// ---- harness ------------------------------------------------------------------------------

/// A started emulator with a client that sends its demo key.
struct Api {
    emu: Emulator,
    http: reqwest::Client,
    base: String,
    key: String,
}

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Api {
    async fn start(options: EmulatorOptions) -> Api {
        // reqwest is built with `rustls-no-provider`: a provider must exist even for http.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let emu = Emulator::start(options).await.expect("emulator starts");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .expect("client");
        Api {
            base: emu.base_url(),
            key: emu.demo_key(),
            emu,
            http,
        }
    }

    async fn documented() -> Api {
        Api::start(EmulatorOptions::default()).await
    }

    async fn current() -> Api {
        Api::start(EmulatorOptions {
            flavor: Flavor::Current,
            ..Default::default()
        })
        .await
    }

    /// `path` under the base URL, or an absolute URL as is.
    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(
            self.http
                .get(self.url(path))
                .header("X-Avala-Api-Key", &self.key),
        )
        .await
    }

    async fn post_json(&self, path: &str, body: Value) -> Reply {
        let request = self.http.post(self.url(path)).json(&body);
        self.send(request.header("X-Avala-Api-Key", &self.key))
            .await
    }

    async fn upload(&self, dataset: &str, name: &str, bytes: Vec<u8>) -> Reply {
        let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned());
        let form = reqwest::multipart::Form::new()
            .text("note", "ignored")
            .part("file", part);
        let url = self.url(&format!("/datasets/{dataset}/items"));
        let request = self.http.post(url).multipart(form);
        self.send(request.header("X-Avala-Api-Key", &self.key))
            .await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body read");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Creates an export and polls it until it is done; gives the final export.
    async fn finished_export(&self, body: Value) -> Value {
        let created = self.post_json("/exports", body).await;
        assert_eq!(created.status, 201, "{}", created.body);
        let id = id_of(&created.body);
        for _ in 0..10 {
            let export = self.get(&format!("/exports/{id}")).await.body;
            if export["download_url"].is_string() || export["status"] == "failed" {
                return export;
            }
        }
        panic!("export {id} never finished");
    }
}

fn id_of(object: &Value) -> String {
    object["id"]
        .as_str()
        .or(object["uid"].as_str())
        .expect("an id")
        .to_owned()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("header {name}"))
        .to_str()
        .unwrap()
}

/// Runs a command (curl, python3) off the async runtime; gives its stdout.
async fn run(mut command: Command) -> String {
    command
        .env("NO_PROXY", "127.0.0.1")
        .env("no_proxy", "127.0.0.1");
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("command runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

// ---- documented flavour -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn documented_pages_visit_every_dataset_once_with_total() {
    let api = Api::start(EmulatorOptions {
        datasets: 23,
        ..Default::default()
    })
    .await;
    let (mut seen, mut cursor, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let query = cursor.map_or(String::new(), |c| format!("&cursor={c}"));
        let page = api.get(&format!("/datasets?limit=5{query}")).await;
        assert_eq!(page.status, 200);
        assert_eq!(page.body["total"], 23);
        pages += 1;
        seen.extend(page.body["items"].as_array().unwrap().iter().map(id_of));
        if page.body["has_more"] == false {
            assert_eq!(page.body["cursor"], Value::Null);
            break;
        }
        cursor = Some(page.body["cursor"].as_str().unwrap().to_owned());
    }
    let expected: Vec<_> = (1..=23).map(|n| format!("ds_{n:04}")).collect();
    assert_eq!((seen, pages), (expected, 5));

    let items = api.get("/datasets/ds_0002/items?limit=1000").await.body;
    assert_eq!(items["total"], 20);
    assert_eq!(items["items"][0]["id"], "item_0002_0001");
    assert_eq!(items["items"][19]["dataset"], "ds_0002");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_thousand_datasets_start_at_once_and_page_quickly() {
    let started = Instant::now();
    let api = Api::start(EmulatorOptions {
        datasets: 100_000,
        ..Default::default()
    })
    .await;
    let cursor = URL_SAFE_NO_PAD.encode(r#"{"o":99950}"#);
    let page = api.get(&format!("/datasets?cursor={cursor}")).await.body;
    assert_eq!(page["total"], 100_000);
    assert_eq!(page["items"].as_array().unwrap().len(), 50);
    assert_eq!(page["items"][49]["id"], "ds_100000");
    assert_eq!(page["has_more"], false);
    assert_eq!(api.get("/datasets/ds_100000").await.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_answers_with_and_without_a_trailing_slash() {
    let api = Api::documented().await;
    for path in [
        "/datasets",
        "/datasets/ds_0001",
        "/datasets/ds_0001/items",
        "/exports",
        "/projects",
        "/projects/prj_0002",
        "/users/me/projects",
    ] {
        assert_eq!(api.get(path).await.status, 200, "{path}");
        assert_eq!(api.get(&format!("{path}/")).await.status, 200, "{path}/");
    }
    let body = json!({"dataset_id": "ds_0001"});
    assert_eq!(api.post_json("/exports/", body).await.status, 201);
    assert_eq!(api.get("/exports/exp_0001/").await.status, 200);
}

// ---- current flavour ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn current_pages_follow_absolute_next_urls_that_keep_limit_and_filters() {
    let api = Api::start(EmulatorOptions {
        flavor: Flavor::Current,
        datasets: 7,
        ..Default::default()
    })
    .await;
    let first = api.get("/datasets/?limit=3&visibility=private").await.body;
    assert_eq!(first["count"], 7);
    assert_eq!(first["previous"], Value::Null);
    let next = first["next"].as_str().unwrap();
    assert!(
        next.starts_with(&format!("{}/datasets/?", api.base)),
        "{next}"
    );
    assert!(
        next.contains("limit=3") && next.contains("visibility=private"),
        "{next}"
    );
    assert!(next.contains("cursor="), "{next}");

    let mut ids: Vec<_> = first["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    let mut url = Some(next.to_owned());
    let mut last = first;
    while let Some(next) = url {
        last = api.get(&next).await.body;
        assert!(last["previous"].is_string(), "{last}");
        ids.extend(last["results"].as_array().unwrap().iter().map(id_of));
        url = last["next"].as_str().map(str::to_owned);
    }
    assert_eq!(ids.len(), 7);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 7);
    assert_eq!(last["results"].as_array().unwrap().len(), 1);
    // No trailing slash in the request: the links still use the canonical form.
    let bare = api.get("/datasets?limit=3").await.body;
    assert!(bare["next"].as_str().unwrap().contains("/datasets/?"));
}

#[tokio::test(flavor = "multi_thread")]
async fn current_objects_carry_every_field_the_sdks_validate() {
    let api = Api::current().await;
    let has = |object: &Value, fields: &[&str]| {
        for field in fields {
            assert!(object.get(*field).is_some(), "{field} missing in {object}");
        }
        assert!(
            object.get("id").is_none(),
            "current objects use uid: {object}"
        );
    };
    let dataset = &api.get("/datasets/").await.body["results"][0];
    has(
        dataset,
        &[
            "uid",
            "name",
            "slug",
            "owner_name",
            "item_count",
            "status",
            "data_type",
            "visibility",
            "created_at",
            "updated_at",
        ],
    );
    let item = &api.get("/datasets/demo/demo-dataset-1/items/").await.body["results"][0];
    has(
        item,
        &[
            "uid",
            "key",
            "dataset",
            "url",
            "metadata",
            "created_at",
            "updated_at",
        ],
    );
    let project = &api.get("/users/me/projects/").await.body["results"][0];
    has(
        project,
        &["uid", "name", "status", "created_at", "updated_at"],
    );
    let task = &api.get("/tasks/").await.body["results"][0];
    has(
        task,
        &[
            "uid",
            "type",
            "name",
            "status",
            "project",
            "created_at",
            "updated_at",
        ],
    );
    let me = api.get("/users/me/").await.body;
    has(&me, &["uid", "username", "email"]);
    let export = api
        .post_json("/exports/", json!({"project": "prj_0001"}))
        .await;
    assert_eq!(export.status, 201);
    has(
        &export.body,
        &["uid", "status", "download_url", "created_at", "updated_at"],
    );
    assert_eq!(export.body["status"], "requested");
}

#[tokio::test(flavor = "multi_thread")]
async fn current_exports_accept_both_body_shapes_and_end_exported() {
    let api = Api::start(EmulatorOptions {
        flavor: Flavor::Current,
        export_polls: 3,
        ..Default::default()
    })
    .await;
    let newer = json!({"name": "nightly", "format": "coco", "datasets": ["ds_0002"],
                       "projects": [], "slices": []});
    let created = api.post_json("/exports/", newer).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["datasets"], json!(["ds_0002"]));
    let mut statuses = vec![created.body["status"].clone()];
    for _ in 0..3 {
        statuses.push(api.get("/exports/exp_0001/").await.body["status"].clone());
    }
    assert_eq!(
        statuses,
        [
            json!("requested"),
            json!("pending"),
            json!("processing"),
            json!("exported")
        ]
    );
    let done = api.get("/exports/exp_0001/").await.body;
    assert!(done["download_url"]
        .as_str()
        .unwrap()
        .starts_with(&api.emu.storage_origin()));

    let neither = api.post_json("/exports/", json!({"format": "json"})).await;
    assert_eq!(neither.status, 400);
    assert!(
        neither.body["non_field_errors"][0].is_string(),
        "{}",
        neither.body
    );
    // The documented body is not the current API's: it is refused the same way.
    let documented = api
        .post_json("/exports/", json!({"project_id": "prj_0001"}))
        .await;
    assert_eq!(documented.status, 400);
    let unknown = api
        .post_json("/exports/", json!({"project": "prj_9999"}))
        .await;
    assert_eq!(
        (unknown.status, unknown.body),
        (404, json!({"detail": "Not found."}))
    );
}

// ---- errors -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn limits_outside_1_to_1000_are_400_in_each_flavours_body() {
    let documented = Api::documented().await;
    let current = Api::current().await;
    for limit in ["0", "1001", "ten", ""] {
        let reply = documented.get(&format!("/datasets?limit={limit}")).await;
        assert_eq!(reply.status, 400, "limit={limit}");
        assert_eq!(reply.body["error"]["code"], "invalid_parameter");
        assert_eq!(reply.body["error"]["details"][0]["field"], "limit");
        let reply = current.get(&format!("/datasets/?limit={limit}")).await;
        assert_eq!(reply.status, 400, "limit={limit}");
        assert!(reply.body["limit"][0].is_string(), "{}", reply.body);
    }
    for limit in ["1", "1000"] {
        let reply = documented.get(&format!("/datasets?limit={limit}")).await;
        assert_eq!(reply.status, 200, "limit={limit}");
    }
    let bad_cursor = documented.get("/datasets?cursor=garbage").await;
    assert_eq!(bad_cursor.status, 400);
    assert_eq!(bad_cursor.body["error"]["code"], "bad_request");
    let bad_cursor = current.get("/datasets/?cursor=garbage").await;
    assert_eq!(
        (bad_cursor.status, bad_cursor.body),
        (400, json!({"detail": "Invalid cursor"}))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_without_a_valid_key_get_401() {
    let any_key = Api::documented().await;
    let anonymous = any_key.http.get(any_key.url("/datasets"));
    let reply = any_key.send(anonymous).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.body["error"]["code"], "unauthorized");
    let empty = any_key
        .http
        .get(any_key.url("/datasets"))
        .header("X-Avala-Api-Key", "");
    assert_eq!(any_key.send(empty).await.status, 401);
    let other = any_key
        .http
        .get(any_key.url("/datasets"))
        .header("X-Avala-Api-Key", "avk_x");
    assert_eq!(any_key.send(other).await.status, 200);

    let api = Api::start(EmulatorOptions {
        flavor: Flavor::Current,
        key: Some("avk_only_this".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(api.key, "avk_only_this");
    assert_eq!(api.get("/datasets/").await.status, 200);
    let wrong = api
        .http
        .get(api.url("/datasets/"))
        .header("X-Avala-Api-Key", "avk_other");
    let reply = api.send(wrong).await;
    assert_eq!(
        (reply.status, reply.body),
        (401, json!({"detail": "Invalid API key."}))
    );
    let missing = api.send(api.http.get(api.url("/datasets/"))).await;
    assert_eq!(missing.status, 401);
    assert!(missing.body["detail"].is_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_objects_are_404_in_each_flavours_body() {
    let documented = Api::documented().await;
    for path in [
        "/datasets/ds_0099",
        "/datasets/ds_1",
        "/exports/exp_0001",
        "/nothing",
    ] {
        let reply = documented.get(path).await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.body["error"]["code"], "not_found", "{path}");
        assert!(reply.body["error"]["message"].is_string());
        assert_eq!(reply.body["error"]["details"], json!([]));
    }
    let reply = documented
        .post_json("/exports", json!({"dataset_id": "ds_0099"}))
        .await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.body["error"]["message"], "Dataset not found");
    let current = Api::current().await;
    for path in [
        "/datasets/ds_0099/",
        "/datasets/ds_0099/items/",
        "/projects/prj_0009/",
    ] {
        let reply = current.get(path).await;
        assert_eq!(
            (reply.status, reply.body),
            (404, json!({"detail": "Not found."}))
        );
    }
}

// ---- uploads ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn multipart_uploads_are_hashed_recorded_and_listed() {
    let api = Api::documented().await;
    let bytes: Vec<u8> = (0..700_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let reply = api.upload("ds_0003", "frame.bin", bytes.clone()).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["id"], "item_0003_0021");
    assert_eq!(reply.body["key"], "frame.bin");
    assert_eq!(reply.body["dataset"], "ds_0003");
    assert_eq!(reply.body["metadata"]["size"], 700_000);
    assert_eq!(reply.body["metadata"]["sha256"], sha256_hex(&bytes));

    let uploads = api.emu.uploads();
    assert_eq!(uploads.len(), 1);
    assert_eq!(
        (uploads[0].dataset.as_str(), uploads[0].item_id.as_str()),
        ("ds_0003", "item_0003_0021")
    );
    assert_eq!(
        (uploads[0].name.as_str(), uploads[0].size),
        ("frame.bin", 700_000)
    );
    assert_eq!(uploads[0].sha256, sha256_hex(&bytes));

    assert_eq!(api.get("/datasets/ds_0003").await.body["item_count"], 21);
    let items = api
        .get("/datasets/ds_0003/items?limit=5&cursor=eyJvIjoyMH0")
        .await;
    assert_eq!(items.body["total"], 21);
    assert_eq!(items.body["items"][0]["key"], "frame.bin");

    let no_file = reqwest::multipart::Form::new().text("file_not", "x");
    let request = api
        .http
        .post(api.url("/datasets/ds_0003/items"))
        .multipart(no_file);
    let reply = api.send(request.header("X-Avala-Api-Key", &api.key)).await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.body["error"]["details"][0]["field"], "file");
    assert_eq!(
        api.upload("ds_0404", "a.txt", b"a".to_vec()).await.status,
        404
    );
    assert_eq!(api.emu.uploads().len(), 1);
}

// ---- exports and downloads ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn exports_advance_per_poll_and_download_from_the_storage_origin_without_the_key() {
    let api = Api::start(EmulatorOptions {
        export_bytes: 300_001,
        ..Default::default()
    })
    .await;
    let created = api
        .post_json(
            "/exports",
            json!({"project_id": "prj_0001", "format": "json"}),
        )
        .await;
    assert_eq!(created.status, 201);
    assert_eq!(
        (&created.body["id"], &created.body["status"]),
        (&json!("exp_0001"), &json!("pending"))
    );
    assert_eq!(created.body["download_url"], Value::Null);
    let first = api.get("/exports/exp_0001").await.body;
    assert_eq!(first["status"], "processing");
    assert_eq!(first["download_url"], Value::Null);
    let done = api.get("/exports/exp_0001").await.body;
    assert_eq!(done["status"], "completed");
    let url = done["download_url"].as_str().unwrap();
    assert!(url.starts_with(&format!(
        "{}/exports/exp_0001.json?",
        api.emu.storage_origin()
    )));
    assert!(url.contains("X-Amz-Signature=") && url.contains("X-Amz-Expires="));

    let response = api.http.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.content_length(), Some(300_001));
    let bytes = response.bytes().await.unwrap();
    assert_eq!(bytes.len(), 300_001);
    assert_eq!(Some(sha256_hex(&bytes)), api.emu.export_sha256("exp_0001"));
    assert_eq!(api.emu.export_sha256("exp_0404"), None);

    let storage: Vec<_> = api
        .emu
        .requests()
        .into_iter()
        .filter(|r| r.origin == Origin::Storage)
        .collect();
    assert_eq!(storage.len(), 1);
    assert_eq!(
        (storage[0].path.as_str(), storage[0].status),
        ("/exports/exp_0001.json", 200)
    );
    assert!(!storage[0].headers.contains_key("x-avala-api-key"));

    let tampered = url.replace("X-Amz-Signature=", "X-Amz-Signature=0");
    assert_eq!(api.http.get(tampered).send().await.unwrap().status(), 403);
    let listed = api.get("/exports").await.body;
    assert_eq!(
        (listed["total"].clone(), id_of(&listed["items"][0])),
        (json!(1), "exp_0001".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fail_export_ends_failed_with_a_message_and_nothing_to_download() {
    for flavor in [Flavor::Documented, Flavor::Current] {
        let api = Api::start(EmulatorOptions {
            flavor,
            fail_export: true,
            ..Default::default()
        })
        .await;
        let export = api
            .finished_export(json!({"dataset_id": "ds_0001", "dataset": "ds_0001"}))
            .await;
        assert_eq!(export["status"], "failed");
        assert_eq!(export["download_url"], Value::Null);
        assert!(export["message"]
            .as_str()
            .unwrap()
            .contains("--fail-export"));
    }
}

// ---- fault options ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_answers_429_with_retry_after_and_rate_headers() {
    let api = Api::start(EmulatorOptions {
        rate_limit: Some(3),
        ..Default::default()
    })
    .await;
    let (mut statuses, started) = (Vec::new(), Instant::now());
    for _ in 0..10 {
        let reply = api.get("/datasets?limit=1").await;
        assert_eq!(header(&reply.headers, "x-ratelimit-limit"), "3");
        assert!(header(&reply.headers, "x-ratelimit-remaining")
            .parse::<u32>()
            .is_ok());
        assert!(header(&reply.headers, "x-ratelimit-reset")
            .parse::<u64>()
            .is_ok());
        if reply.status == 429 {
            assert_eq!(header(&reply.headers, "retry-after"), "1");
            assert_eq!(reply.body["error"]["code"], "rate_limited");
        }
        statuses.push(reply.status);
    }
    // Ten requests within a second span at most two one-second windows: at most six get
    // through (on a machine slow enough to span more, at least one is still refused).
    let expected = if started.elapsed() < Duration::from_secs(1) {
        4
    } else {
        1
    };
    assert!(
        statuses.iter().filter(|&&s| s == 429).count() >= expected,
        "{statuses:?}"
    );
    assert_eq!(statuses[0], 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn fail_rate_one_answers_503_and_spares_the_storage_origin() {
    let api = Api::start(EmulatorOptions {
        fail_rate: 1.0,
        ..Default::default()
    })
    .await;
    for _ in 0..3 {
        let reply = api.get("/datasets").await;
        assert_eq!(reply.status, 503);
        assert_eq!(reply.body["error"]["code"], "service_unavailable");
    }
    let storage = api
        .http
        .get(format!("{}/nothing", api.emu.storage_origin()));
    assert_eq!(api.send(storage).await.status, 404);
    let options = EmulatorOptions {
        fail_rate: 1.5,
        ..Default::default()
    };
    assert!(matches!(
        Emulator::start(options).await,
        Err(EmulatorError::Options(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn latency_delays_api_responses() {
    let api = Api::start(EmulatorOptions {
        latency: Some(150),
        ..Default::default()
    })
    .await;
    let started = Instant::now();
    assert_eq!(api.get("/datasets").await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
}

// ---- scripted faults ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn status_faults_fire_on_their_trigger_with_retry_after_in_both_forms() {
    let api = Api::documented().await;
    let status = |code, retry_after| FaultEffect::Status {
        code,
        body: None,
        retry_after,
        after_route: false,
    };
    api.emu.add_fault(
        Fault::new(
            "GET",
            "/api/v1/datasets",
            status(429, Some(RetryAfter::Seconds(1))),
        )
        .named("second-get")
        .when(Trigger::Nth(2)),
    );
    api.emu.add_fault(
        Fault::new(
            "GET",
            "/api/v1/projects",
            status(503, Some(RetryAfter::HttpDateIn(5))),
        )
        .named("projects-twice")
        .when(Trigger::First(2)),
    );
    api.emu.add_fault(
        Fault::new(
            "*",
            "/api/v1/datasets/*",
            FaultEffect::Status {
                code: 502,
                body: Some(json!("<html>Bad gateway</html>")),
                retry_after: None,
                after_route: false,
            },
        )
        .named("proxy")
        .when(Trigger::Always),
    );
    api.emu
        .add_fault(Fault::new("POST", "/api/v1/datasets", status(500, None)));

    let statuses: Vec<_> = [
        api.get("/datasets").await,
        api.get("/datasets/").await,
        api.get("/datasets").await,
    ]
    .iter()
    .map(|r| r.status)
    .collect();
    assert_eq!(statuses, [200, 429, 200]);

    let throttled = api.get("/projects").await;
    assert_eq!(throttled.status, 503);
    assert_eq!(throttled.body["error"]["code"], "service_unavailable");
    let date = httpdate::parse_http_date(header(&throttled.headers, "retry-after")).unwrap();
    assert!(date > std::time::SystemTime::now());
    assert_eq!(api.get("/projects").await.status, 503);
    assert_eq!(api.get("/projects").await.status, 200);

    let proxy = api.get("/datasets/ds_0001").await;
    assert_eq!(
        (proxy.status, proxy.body),
        (502, json!("<html>Bad gateway</html>"))
    );
    assert_eq!(api.get("/datasets/ds_0002/").await.status, 502);

    assert_eq!(
        api.emu.faults_delivered(),
        [
            ("second-get".to_owned(), 1),
            ("projects-twice".to_owned(), 2),
            ("proxy".to_owned(), 2),
            ("#3".to_owned(), 0),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_status_after_the_route_keeps_what_the_route_stored() {
    let api = Api::documented().await;
    api.emu.add_fault(
        Fault::new(
            "POST",
            "/api/v1/datasets/*/items",
            FaultEffect::Status {
                code: 500,
                body: None,
                retry_after: None,
                after_route: true,
            },
        )
        .named("lost-reply"),
    );
    let reply = api.upload("ds_0001", "a.txt", b"hello".to_vec()).await;
    assert_eq!(reply.status, 500);
    assert_eq!(api.emu.uploads().len(), 1);
    assert_eq!(api.emu.fault_delivered("lost-reply"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn delay_faults_wait_then_answer_normally() {
    let api = Api::documented().await;
    api.emu
        .add_fault(Fault::new("GET", "/api/v1/exports", FaultEffect::DelayMs(300)).named("slow"));
    let started = Instant::now();
    assert_eq!(api.get("/exports/").await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(api.get("/exports").await.status, 200);
    assert!(started.elapsed() < Duration::from_millis(300));
    assert_eq!(api.emu.fault_delivered("slow"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn cut_faults_drop_the_connection_short_of_the_promised_length() {
    let api = Api::start(EmulatorOptions {
        export_bytes: 65_536,
        ..Default::default()
    })
    .await;
    let export = api.finished_export(json!({"project_id": "prj_0002"})).await;
    let url = export["download_url"].as_str().unwrap();
    api.emu.add_fault(
        Fault::new("GET", "/exports/*", FaultEffect::CutAfterBytes(10_000)).named("cut-download"),
    );
    api.emu.add_fault(
        Fault::new("GET", "/api/v1/projects", FaultEffect::CutAfterBytes(20)).named("cut-json"),
    );

    let response = api.http.get(url).send().await.unwrap();
    assert_eq!(response.content_length(), Some(65_536));
    let mut response = response;
    let mut received = 0;
    let error = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => received += chunk.len(),
            Ok(None) => panic!("the body ended normally after {received} bytes"),
            Err(error) => break error,
        }
    };
    assert_eq!(received, 10_000, "{error}");
    // Only the first download is cut: the next one is whole.
    let whole = api
        .http
        .get(url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(Some(sha256_hex(&whole)), api.emu.export_sha256("exp_0001"));

    let request = api
        .http
        .get(api.url("/projects"))
        .header("X-Avala-Api-Key", &api.key);
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.is_err());
    assert_eq!(api.emu.fault_delivered("cut-download"), 1);
    assert_eq!(api.emu.fault_delivered("cut-json"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn redirect_faults_send_the_client_to_the_other_origin() {
    let api = Api::documented().await;
    api.emu.add_fault(
        Fault::new("GET", "/api/v1/datasets", FaultEffect::RedirectOtherOrigin).named("away"),
    );
    let reply = api.get("/datasets?limit=2").await;
    assert_eq!(reply.status, 302);
    let location = header(&reply.headers, "location");
    assert_eq!(
        location,
        format!("{}/api/v1/datasets?limit=2", api.emu.storage_origin())
    );
    // A careful client follows it without the key; the journal shows what reached storage.
    let followed = api.send(api.http.get(location)).await;
    assert_eq!(followed.status, 404);
    let last = api.emu.requests().pop().unwrap();
    assert_eq!(
        (last.origin, last.path.as_str()),
        (Origin::Storage, "/api/v1/datasets")
    );
    assert_eq!(last.query, "limit=2");
    assert!(!last.headers.contains_key("x-avala-api-key"));
    assert_eq!(api.emu.fault_delivered("away"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn repeat_cursor_faults_send_the_current_cursor_again() {
    for flavor in [Flavor::Documented, Flavor::Current] {
        let api = Api::start(EmulatorOptions {
            flavor,
            ..Default::default()
        })
        .await;
        // Today's API lists items by owner/slug; the documented page by id.
        let (pattern, items) = match flavor {
            Flavor::Documented => ("/api/v1/datasets/*/items", "/datasets/ds_0001/items"),
            Flavor::Current => (
                "/api/v1/datasets/*/*/items",
                "/datasets/demo/demo-dataset-1/items",
            ),
        };
        api.emu.add_fault(
            Fault::new("GET", pattern, FaultEffect::RepeatCursor)
                .named("loop")
                .when(Trigger::Always),
        );
        let cursor = URL_SAFE_NO_PAD.encode(r#"{"o":5}"#);
        let page = api
            .get(&format!("{items}/?limit=5&cursor={cursor}"))
            .await
            .body;
        let next = match flavor {
            Flavor::Documented => page["cursor"].as_str().unwrap().to_owned(),
            Flavor::Current => page["next"].as_str().unwrap().to_owned(),
        };
        assert!(next.ends_with(&cursor), "{next}");
        // The last page has no next cursor to repeat: not counted as delivered.
        let last = URL_SAFE_NO_PAD.encode(r#"{"o":15}"#);
        api.get(&format!("{items}?limit=5&cursor={last}")).await;
        assert_eq!(api.emu.fault_delivered("loop"), 1);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fault_plan_file_is_loaded_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("faults.json");
    std::fs::write(
        &plan,
        r#"{"faults": [
            {"name": "throttle", "method": "GET", "path": "/api/v1/datasets",
             "when": {"nth": 1}, "effect": {"status": {"code": 429, "retry_after": {"seconds": 2}}}},
            {"method": "get", "path": "/api/v1/**", "when": {"first": 2}, "effect": {"delay_ms": 1}}
        ]}"#,
    )
    .unwrap();
    let api = Api::start(EmulatorOptions {
        faults: Some(plan.clone()),
        ..Default::default()
    })
    .await;
    let reply = api.get("/datasets").await;
    assert_eq!(
        (reply.status, header(&reply.headers, "retry-after")),
        (429, "2")
    );
    assert_eq!(api.get("/datasets").await.status, 200);
    assert_eq!(api.get("/datasets").await.status, 200);
    assert_eq!(
        api.emu.faults_delivered(),
        [("throttle".to_owned(), 1), ("#1".to_owned(), 2)]
    );

    std::fs::write(&plan, r#"[{"path": "/x", "effect": "explode"}]"#).unwrap();
    let options = EmulatorOptions {
        faults: Some(plan),
        ..Default::default()
    };
    let error = Emulator::start(options)
        .await
        .err()
        .expect("a bad plan is refused");
    assert!(matches!(error, EmulatorError::Faults { .. }), "{error}");
    assert!(error.to_string().contains("explode"), "{error}");
}

// ---- seeding, journal, shutdown -----------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_seed_file_replaces_the_generated_datasets() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.json");
    std::fs::write(
        &seed,
        r#"{"datasets": [
              {"id": "ds_cats", "name": "Cats", "items": [{"key": "tom.jpg"}, {"key": "felix.jpg"}]},
              {"name": "Dogs", "data_type": "video", "item_count": 3}],
            "projects": [{"id": "prj_zoo", "name": "Zoo"}]}"#,
    )
    .unwrap();
    let api = Api::start(EmulatorOptions {
        seed: Some(seed.clone()),
        ..Default::default()
    })
    .await;
    let datasets = api.get("/datasets").await.body;
    assert_eq!(datasets["total"], 2);
    assert_eq!(datasets["items"][0]["id"], "ds_cats");
    assert_eq!(datasets["items"][1]["id"], "ds_0002");
    assert_eq!(datasets["items"][1]["slug"], "dogs");
    let items = api.get("/datasets/ds_cats/items").await.body;
    assert_eq!(items["items"][1]["key"], "felix.jpg");
    assert_eq!(api.get("/datasets/ds_0002/items").await.body["total"], 3);
    assert_eq!(api.get("/projects").await.body["items"][0]["id"], "prj_zoo");
    let export = api
        .post_json("/exports", json!({"project_id": "prj_zoo"}))
        .await;
    assert_eq!(export.status, 201);

    std::fs::write(&seed, r#"{"datasets": [{"nme": "typo"}]}"#).unwrap();
    let options = EmulatorOptions {
        seed: Some(seed),
        ..Default::default()
    };
    let error = Emulator::start(options)
        .await
        .err()
        .expect("a bad seed is refused");
    assert!(matches!(error, EmulatorError::Seed { .. }), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_journal_records_both_origins_in_order() {
    let api = Api::documented().await;
    api.get("/datasets?limit=1").await;
    api.send(api.http.get(api.url("/projects"))).await;
    api.send(
        api.http
            .get(format!("{}/exports/x.json", api.emu.storage_origin())),
    )
    .await;
    let journal = api.emu.requests();
    let summary: Vec<_> = journal
        .iter()
        .map(|r| (r.origin, r.method.as_str(), r.path.as_str(), r.status))
        .collect();
    assert_eq!(
        summary,
        [
            (Origin::Api, "GET", "/api/v1/datasets", 200),
            (Origin::Api, "GET", "/api/v1/projects", 401),
            (Origin::Storage, "GET", "/exports/x.json", 403),
        ]
    );
    assert_eq!(journal[0].query, "limit=1");
    assert_eq!(journal[0].headers["x-avala-api-key"], api.key);
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_closes_both_listeners() {
    let api = Api::documented().await;
    let (base, storage) = (api.base.clone(), api.emu.storage_origin());
    assert_eq!(api.get("/datasets").await.status, 200);
    api.emu.shutdown().await;
    assert!(api
        .http
        .get(format!("{base}/datasets"))
        .send()
        .await
        .is_err());
    assert!(api.http.get(storage).send().await.is_err());
}

// ---- the documented page's own examples ---------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn the_documented_curl_examples_work_unchanged_apart_from_the_host() {
    let api = Api::documented().await;
    let (base, key) = (api.base.clone(), api.key.clone());
    let curl = |script: &str| {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(script)
            .env("BASE", &base)
            .env("KEY", &key);
        command
    };

    // List datasets.
    let listed = run(curl(r#"curl -s -H "X-Avala-Api-Key: $KEY" $BASE/datasets"#)).await;
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(
        (listed["total"].clone(), listed["has_more"].clone()),
        (json!(3), json!(false))
    );

    // Upload a file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scene.jsonl");
    std::fs::write(&file, b"{\"frame\": 1}\n{\"frame\": 2}\n").unwrap();
    let mut upload = curl(
        r#"curl -s -X POST -H "X-Avala-Api-Key: $KEY" -F "file=@$FILE" $BASE/datasets/ds_0001/items"#,
    );
    upload.env("FILE", &file);
    let item: Value = serde_json::from_str(&run(upload).await).unwrap();
    assert_eq!(item["key"], "scene.jsonl");
    let digest = sha256_hex(&std::fs::read(&file).unwrap());
    assert_eq!(item["metadata"]["sha256"], digest);
    assert_eq!(api.emu.uploads()[0].sha256, digest);

    // Create an export, poll it, download it.
    let created = run(curl(
        r#"curl -s -X POST -H "X-Avala-Api-Key: $KEY" -H "Content-Type: application/json" \
             -d '{"project_id": "prj_0001", "format": "json"}' $BASE/exports"#,
    ))
    .await;
    let id = id_of(&serde_json::from_str(&created).unwrap());
    let poll = format!(r#"curl -s -H "X-Avala-Api-Key: $KEY" $BASE/exports/{id}"#);
    let mut export = Value::Null;
    for _ in 0..5 {
        export = serde_json::from_str(&run(curl(&poll)).await).unwrap();
        if export["status"] == "completed" {
            break;
        }
    }
    assert_eq!(export["status"], "completed");
    let out = dir.path().join("export.json");
    let mut download = curl(r#"curl -s -f -o "$OUT" "$URL""#);
    download
        .env("OUT", &out)
        .env("URL", export["download_url"].as_str().unwrap());
    run(download).await;
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(Some(sha256_hex(&bytes)), api.emu.export_sha256(&id));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_documented_python_pagination_loop_works_unchanged_apart_from_the_host() {
    let api = Api::start(EmulatorOptions {
        datasets: 120,
        ..Default::default()
    })
    .await;
    let script = r#"
import json, os, urllib.request

BASE_URL = os.environ["BASE"]
API_KEY = os.environ["KEY"]

def list_all_datasets():
    datasets, cursor = [], None
    while True:
        url = f"{BASE_URL}/datasets?limit=50"
        if cursor:
            url += f"&cursor={cursor}"
        req = urllib.request.Request(url, headers={"X-Avala-Api-Key": API_KEY})
        with urllib.request.urlopen(req) as resp:
            page = json.load(resp)
        datasets.extend(page["items"])
        if not page["has_more"]:
            break
        cursor = page["cursor"]
    return datasets

print(json.dumps([d["id"] for d in list_all_datasets()]))
"#;
    let mut command = Command::new("python3");
    command
        .arg("-c")
        .arg(script)
        .env("BASE", &api.base)
        .env("KEY", &api.key);
    let ids: Vec<String> = serde_json::from_str(&run(command).await).unwrap();
    let expected: Vec<_> = (1..=120).map(|n| format!("ds_{n:04}")).collect();
    assert_eq!(ids, expected);
    let pages = api.emu.requests().len();
    assert_eq!(pages, 3);
}

// ---- today's API (current flavour) ------------------------------------------------------

impl Api {
    async fn send_raw(&self, request: reqwest::RequestBuilder) -> Reply {
        self.send(request).await
    }

    async fn post_key(&self, path: &str, body: Value) -> Reply {
        self.post_json(path, body).await
    }
}

/// Reads one HTTP/1.1 response (status line, headers, Content-Length body) from a stream.
async fn read_response(
    stream: &mut tokio::io::BufReader<tokio::net::TcpStream>,
) -> Option<(u16, Vec<(String, String)>, Vec<u8>)> {
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _};
    let mut line = String::new();
    if stream.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let status: u16 = line.split(' ').nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).await.ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.ok()?;
    Some((status, headers, body))
}

#[tokio::test(flavor = "multi_thread")]
async fn three_thousand_404s_with_bodies_never_drop_the_kept_alive_connection() {
    use tokio::io::AsyncWriteExt as _;
    for flavor in [Flavor::Current, Flavor::Documented] {
        let api = Api::start(EmulatorOptions {
            flavor,
            journal_limit: 0,
            ..Default::default()
        })
        .await;
        let authority = api
            .base
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let tcp = tokio::net::TcpStream::connect(&authority).await.unwrap();
        let mut stream = tokio::io::BufReader::new(tcp);
        let body =
            r#"{"name": "a body nobody reads", "padding": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;
        let slash = if flavor == Flavor::Current { "/" } else { "" };
        let (mut not_found, mut ok) = (0, 0);
        for i in 0..3000 {
            // A 404 with a body (and every tenth pair a 405 with a body), then a valid GET.
            let wrong = if i % 10 == 9 {
                format!("DELETE /api/v1/datasets{slash} HTTP/1.1\r\n")
            } else {
                format!("POST /api/v1/no-such-route/{i}{slash} HTTP/1.1\r\n")
            };
            let request = format!(
                "{wrong}Host: {authority}\r\nX-Avala-Api-Key: {key}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n{body}\
                 GET /api/v1/datasets{slash}?limit=1 HTTP/1.1\r\nHost: {authority}\r\nX-Avala-Api-Key: {key}\r\n\r\n",
                key = api.key,
                len = body.len(),
            );
            stream
                .get_mut()
                .write_all(request.as_bytes())
                .await
                .unwrap();
            let (status, headers, error) = read_response(&mut stream)
                .await
                .unwrap_or_else(|| panic!("{flavor:?}: connection dropped at pair {i}"));
            assert!(status == 404 || status == 405, "{status}");
            assert!(
                !headers
                    .iter()
                    .any(|(n, v)| n == "connection" && v == "close"),
                "{flavor:?}: the server closes at pair {i}"
            );
            let error: Value = serde_json::from_slice(&error).expect("a JSON error body");
            assert!(error.is_object());
            not_found += 1;
            let (status, _, _) = read_response(&mut stream)
                .await
                .unwrap_or_else(|| panic!("{flavor:?}: connection dropped after pair {i}'s error"));
            assert_eq!(status, 200);
            ok += 1;
        }
        assert_eq!((not_found, ok), (3000, 3000));
        api.emu.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_405_has_a_json_body_in_each_flavour() {
    for flavor in [Flavor::Documented, Flavor::Current] {
        let api = Api::start(EmulatorOptions {
            flavor,
            ..Default::default()
        })
        .await;
        let reply = api
            .send_raw(
                api.http
                    .delete(api.url("/datasets/ds_0001"))
                    .header("X-Avala-Api-Key", &api.key),
            )
            .await;
        assert_eq!(reply.status, 405, "{flavor:?}");
        match flavor {
            Flavor::Documented => assert_eq!(reply.body["error"]["code"], "method_not_allowed"),
            Flavor::Current => assert!(reply.body["detail"].as_str().unwrap().contains("DELETE")),
        }
        assert_eq!(header(&reply.headers, "content-type"), "application/json");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_headers_come_on_every_api_response_without_the_option() {
    let api = Api::current().await;
    let reply = api.get("/datasets/").await;
    let limit: u64 = header(&reply.headers, "x-ratelimit-limit").parse().unwrap();
    let remaining: u64 = header(&reply.headers, "x-ratelimit-remaining")
        .parse()
        .unwrap();
    assert!(limit >= 1000 && remaining < limit, "{limit} {remaining}");
    assert!(
        header(&reply.headers, "x-ratelimit-reset")
            .parse::<u64>()
            .unwrap()
            > 1_700_000_000
    );
    let missing = api.get("/datasets/nope/").await;
    assert_eq!(missing.status, 404);
    assert!(missing.headers.contains_key("x-ratelimit-remaining"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_storage_origin_refuses_any_request_carrying_the_key() {
    let api = Api::current().await;
    let export = api.finished_export(json!({"dataset": "ds_0001"})).await;
    let url = export["download_url"].as_str().unwrap().to_owned();
    let leaked = api
        .send_raw(api.http.get(&url).header("X-Avala-Api-Key", &api.key))
        .await;
    assert_eq!(leaked.status, 400);
    assert!(leaked.body.as_str().unwrap().contains("X-Avala-Api-Key"));
    assert_eq!(api.emu.storage_key_leaks(), 1);
    let clean = api.send_raw(api.http.get(&url)).await;
    assert_eq!(clean.status, 200);
    assert_eq!(api.emu.storage_key_leaks(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn exports_are_listed_newest_first_and_are_real_documents() {
    let api = Api::current().await;
    for dataset in ["ds_0001", "ds_0002", "ds_0003"] {
        api.post_key("/exports/", json!({ "dataset": dataset }))
            .await;
    }
    let listed: Vec<String> = api.get("/exports/").await.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(listed, ["exp_0003", "exp_0002", "exp_0001"]);
    let export = api.finished_export(json!({"project": "prj_0001"})).await;
    let file = api
        .send_raw(api.http.get(export["download_url"].as_str().unwrap()))
        .await;
    assert_eq!(file.status, 200);
    // Project 1 of 2 covers datasets 1 and 3 (its seeded items all listed).
    let datasets: Vec<&str> = file.body["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["uid"].as_str().unwrap())
        .collect();
    assert_eq!(datasets, ["ds_0001", "ds_0003"]);
    assert_eq!(
        file.body["datasets"][0]["items"].as_array().unwrap().len(),
        20
    );
    assert_eq!(file.body["projects"][0]["uid"], "prj_0001");
}

#[tokio::test(flavor = "multi_thread")]
async fn documented_uploads_appear_in_exports_and_item_urls_serve_bytes() {
    let api = Api::documented().await;
    let bytes = b"{\"frame\": 1}\n".repeat(100);
    let item = api
        .upload("ds_0002", "scene.jsonl", bytes.clone())
        .await
        .body;
    let served = api
        .http
        .get(item["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.bytes().await.unwrap().as_ref(), bytes.as_slice());
    let seeded = &api.get("/datasets/ds_0001/items?limit=1").await.body["items"][0];
    let served = api
        .http
        .get(seeded["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(
        served.bytes().await.unwrap().len() as u64,
        seeded["metadata"]["size"].as_u64().unwrap()
    );
    let export = api.finished_export(json!({"dataset_id": "ds_0002"})).await;
    let file = api
        .send_raw(api.http.get(export["download_url"].as_str().unwrap()))
        .await;
    let keys: Vec<&str> = file.body["datasets"][0]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 21);
    assert_eq!(keys[20], "scene.jsonl");
}

#[tokio::test(flavor = "multi_thread")]
async fn current_datasets_filter_create_and_become_created_after_polls() {
    let api = Api::current().await;
    let uids = |reply: &Reply| -> Vec<String> {
        reply.body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(id_of)
            .collect()
    };
    assert_eq!(
        uids(&api.get("/datasets/?data_type=lidar").await),
        ["ds_0003"]
    );
    assert_eq!(uids(&api.get("/datasets/?name=SET%202").await), ["ds_0002"]);
    assert_eq!(
        uids(&api.get("/datasets/?visibility=public").await).len(),
        0
    );
    let body = json!({"name": "Cats", "slug": "cats", "data_type": "image",
                      "visibility": "private", "create_metadata": true});
    let created = api.post_key("/datasets/", body.clone()).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["status"], "creating");
    assert_eq!(created.body["owner_name"], "demo");
    let uid = id_of(&created.body);
    assert_eq!(
        uids(&api.get("/datasets/?status=creating").await),
        std::slice::from_ref(&uid)
    );
    let taken = api.post_key("/datasets/", body).await;
    assert_eq!(taken.status, 400);
    assert_eq!(
        taken.body,
        json!({"slug": ["dataset with this slug already exists."]})
    );
    let statuses: Vec<Value> = [
        api.get(&format!("/datasets/{uid}/")).await,
        api.get("/datasets/demo/cats/").await,
        api.get(&format!("/datasets/{uid}/")).await,
    ]
    .iter()
    .map(|r| r.body["status"].clone())
    .collect();
    assert_eq!(statuses, ["creating", "creating", "created"]);
    // Today's API has no items route by uid.
    assert_eq!(api.get("/datasets/ds_0001/items/").await.status, 404);
    let items = api
        .get("/datasets/demo/demo-dataset-1/items/?limit=2")
        .await;
    let first = id_of(&items.body["results"][0]);
    let item = api
        .get(&format!("/datasets/demo/demo-dataset-1/items/{first}/"))
        .await;
    assert_eq!(item.status, 200);
    assert_eq!(item.body["key"], "image_0001.jpg");
}

#[tokio::test(flavor = "multi_thread")]
async fn presigned_puts_parts_quota_and_finalize() {
    let api = Api::start(EmulatorOptions {
        flavor: Flavor::Current,
        multipart_threshold: 1024,
        upload_quota: 20 * 1024 * 1024,
        ..Default::default()
    })
    .await;
    let presign = |path: &str, size: usize| {
        json!({"dataset_name": "Robots", "file_path_in_dataset": path, "content_length": size,
               "upload_protocol_version": 2, "dataset_upload_uid": "batch-1"})
    };
    let url = "/datasets/manual-upload/file-upload-url/";
    // A small file: one PUT, whose Content-Length must match; a second PUT is 412.
    let small = b"0123456789".to_vec();
    let target = api.post_key(url, presign("a.txt", small.len())).await.body;
    assert_eq!(target["method"], "PUT", "{target}");
    let put_url = target["url"].as_str().unwrap().to_owned();
    let short = api
        .http
        .put(&put_url)
        .body(small[..5].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(short.status(), 400);
    let sent = api
        .http
        .put(&put_url)
        .body(small.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);
    let again = api
        .http
        .put(&put_url)
        .body(small.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 412);
    let tampered = put_url.replace("X-Amz-Signature=", "X-Amz-Signature=0");
    assert_eq!(
        api.http
            .put(tampered)
            .body(small.clone())
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let upload = target["upload_uid"].as_str().unwrap().to_owned();
    let done = api
        .post_key(
            &format!("/datasets/manual-upload/uploads/{upload}/complete/"),
            json!({}),
        )
        .await;
    assert_eq!(done.body["complete"], true);
    assert_eq!(
        api.post_key(url, presign("a.txt", small.len())).await.body["complete"],
        true
    );

    // A large file: MULTIPART, parts signed one by one; completing early is refused.
    let big: Vec<u8> = (0..6 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let session = api.post_key(url, presign("big.bin", big.len())).await.body;
    assert_eq!(session["method"], "MULTIPART", "{session}");
    let part_size = session["part_size"].as_u64().unwrap() as usize;
    assert_eq!(part_size, 5 * 1024 * 1024);
    assert_eq!(session["part_count"], 2);
    let upload = session["upload_uid"].as_str().unwrap().to_owned();
    let complete = format!("/datasets/manual-upload/uploads/{upload}/complete/");
    assert_eq!(api.post_key(&complete, json!({})).await.status, 400);
    for (n, chunk) in big.chunks(part_size).enumerate() {
        let signed = api
            .post_key(
                &format!("/datasets/manual-upload/uploads/{upload}/parts/"),
                json!({"part_numbers": [n + 1]}),
            )
            .await
            .body;
        let part = &signed["parts"][0];
        assert_eq!(part["part_number"], n + 1);
        let sent = api
            .http
            .put(part["url"].as_str().unwrap())
            .body(chunk.to_vec())
            .send()
            .await;
        assert_eq!(sent.unwrap().status(), 200);
    }
    // A resumed presign lists the uploaded parts.
    let resumed = api.post_key(url, presign("big.bin", big.len())).await.body;
    assert_eq!(resumed["uploaded_parts"].as_array().unwrap().len(), 2);
    assert_eq!(
        api.post_key(&complete, json!({})).await.body["complete"],
        true
    );

    // Over the quota: 413 with the numbers.
    let quota = api.get("/datasets/manual-upload/quota/").await.body;
    assert_eq!(quota["limit"], 20 * 1024 * 1024);
    let over = api
        .post_key(url, presign("huge.bin", 30 * 1024 * 1024))
        .await;
    assert_eq!(over.status, 413);
    assert_eq!(over.body["limit"], 20 * 1024 * 1024);
    assert!(over.body["used"].as_u64().unwrap() >= big.len() as u64);

    // Finalize: the batch's files become the items of a new dataset, keyed by their path.
    let dataset = api
        .post_key(
            "/datasets/manual-upload/",
            json!({"name": "Robots", "slug": "robots", "data_type": "image",
                   "visibility": "private", "create_metadata": true, "dataset_upload_uid": "batch-1"}),
        )
        .await;
    assert_eq!(dataset.status, 201, "{}", dataset.body);
    assert_eq!(dataset.body["status"], "creating");
    let items = api.get("/datasets/demo/robots/items/").await.body;
    let mut keys: Vec<&str> = items["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["a.txt", "big.bin"]);
    for item in items["results"].as_array().unwrap() {
        let bytes = api
            .http
            .get(item["url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        let bytes = bytes.bytes().await.unwrap();
        let want = if item["key"] == "a.txt" { &small } else { &big };
        assert_eq!(sha256_hex(&bytes), sha256_hex(want), "{}", item["key"]);
    }
    let stored: Vec<_> = api
        .emu
        .uploads()
        .into_iter()
        .map(|u| (u.name, u.size))
        .collect();
    assert!(stored.contains(&("big.bin".into(), big.len() as u64)));
    assert_eq!(api.emu.storage_key_leaks(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_form_uploads_check_the_policy_and_the_size() {
    let api = Api::current().await;
    let target = api
        .post_key(
            "/datasets/manual-upload/file-upload-url/",
            json!({"dataset_name": "Forms", "file_path_in_dataset": "x/a.txt", "content_length": 5}),
        )
        .await
        .body;
    assert_eq!(target["method"], "POST", "{target}");
    let form = |fields: &Value, bytes: &'static [u8]| {
        let mut form = reqwest::multipart::Form::new();
        for (k, v) in fields.as_object().unwrap() {
            form = form.text(k.clone(), v.as_str().unwrap().to_owned());
        }
        form.part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name("a.txt"),
        )
    };
    let url = target["url"].as_str().unwrap();
    let wrong_size = api
        .http
        .post(url)
        .multipart(form(&target["fields"], b"toolong"))
        .send();
    assert_eq!(wrong_size.await.unwrap().status(), 400);
    let mut forged = target["fields"].clone();
    forged["key"] = json!("elsewhere.txt");
    let sent = api.http.post(url).multipart(form(&forged, b"hello")).send();
    assert_eq!(sent.await.unwrap().status(), 403);
    let sent = api
        .http
        .post(url)
        .multipart(form(&target["fields"], b"hello"))
        .send();
    assert_eq!(sent.await.unwrap().status(), 204);
    let dataset = api
        .post_key(
            "/datasets/manual-upload/",
            json!({"name": "Forms", "slug": "forms", "data_type": "image", "visibility": "private",
                   "create_metadata": true}),
        )
        .await;
    assert_eq!(dataset.status, 201, "{}", dataset.body);
    assert_eq!(dataset.body["item_count"], 1);
    let none_left = api
        .post_key(
            "/datasets/manual-upload/",
            json!({"name": "Forms", "slug": "forms-2", "data_type": "image"}),
        )
        .await;
    assert_eq!(none_left.status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn tasks_filter_by_project_and_status_and_complete_after_polls() {
    let api = Api::current().await;
    let statuses = |reply: &Reply| -> Vec<String> {
        reply.body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["status"].as_str().unwrap().to_owned())
            .collect()
    };
    let first = api.get("/tasks/?project=prj_0002").await;
    assert_eq!(statuses(&first), ["pending", "pending", "pending"]);
    assert!(first.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["project"] == "prj_0002"));
    assert_eq!(
        statuses(&api.get("/tasks/?project=prj_0002").await),
        ["in_progress"; 3]
    );
    assert_eq!(
        statuses(&api.get("/tasks/?project=prj_0002").await),
        ["completed"; 3]
    );
    let done = api.get("/tasks/?project=prj_0002&status=completed").await;
    assert_eq!(done.body["count"], 3);
    let one = api.get("/tasks/prj_0002-t1/").await;
    assert_eq!(
        (one.status, one.body["type"].clone()),
        (200, json!("annotation"))
    );
    assert_eq!(api.get("/tasks/prj_0009-t1/").await.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn table_driven_resources_list_create_update_and_delete() {
    let api = Api::current().await;
    let created = api
        .post_key("/webhooks/", json!({"target_url": "https://example.com/h", "events": ["export.completed"], "secret": "s3cr3t"}))
        .await;
    assert_eq!(created.status, 201);
    assert!(
        created.body.get("secret").is_none(),
        "secrets are never kept"
    );
    let uid = id_of(&created.body);
    assert_eq!(api.get("/webhooks/").await.body["count"], 2);
    let patched = api
        .send_raw(
            api.http
                .patch(api.url(&format!("/webhooks/{uid}/")))
                .header("X-Avala-Api-Key", &api.key)
                .json(&json!({"is_active": false})),
        )
        .await;
    assert_eq!(patched.body["is_active"], false);
    let deleted = api
        .send_raw(
            api.http
                .delete(api.url(&format!("/webhooks/{uid}/")))
                .header("X-Avala-Api-Key", &api.key),
        )
        .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(api.get(&format!("/webhooks/{uid}/")).await.status, 404);
    // Organizations page by number.
    let first = api.get("/organizations/?limit=1").await.body;
    assert!(
        first["next"].as_str().unwrap().contains("page=2"),
        "{first}"
    );
    let second = api.get("/organizations/?limit=1&page=2").await.body;
    assert_eq!(second["next"], Value::Null);
    assert_ne!(first["results"][0]["slug"], second["results"][0]["slug"]);
    // A bare list, and a path that exists with other methods.
    assert!(api.get("/qc-available-tools/").await.body.is_array());
    let wrong = api.post_key("/webhook-deliveries/", json!({})).await;
    assert_eq!(wrong.status, 405);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rest_pages_own_examples_run_verbatim_with_project_and_dataset_abc123() {
    let api = Api::documented().await;
    let (base, key) = (api.base.clone(), api.key.clone());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("image.jpg");
    std::fs::write(&file, b"\xff\xd8\xff not really a jpeg").unwrap();
    let out = dir.path().join("export.json");
    // The page's examples, with only the host (BASE) and the key (KEY) taken from the
    // environment, as a reader would paste them.
    let script = r#"
set -e
curl -s -f -H "X-Avala-Api-Key: $KEY" "$BASE/datasets" > list.json
cursor=""
: > all.txt
while :; do
  url="$BASE/datasets/dataset_abc123/items?limit=5"
  [ -n "$cursor" ] && url="$url&cursor=$cursor"
  curl -s -f -H "X-Avala-Api-Key: $KEY" "$url" > page.json
  python3 -c 'import json; [print(i["id"]) for i in json.load(open("page.json"))["items"]]' >> all.txt
  [ "$(python3 -c 'import json; print(json.load(open("page.json"))["has_more"])')" = "True" ] || break
  cursor=$(python3 -c 'import json; print(json.load(open("page.json"))["cursor"])')
done
curl -s -f -X POST "$BASE/datasets/dataset_abc123/items" \
  -H "X-Avala-Api-Key: $KEY" \
  -F "file=@$FILE" > upload.json
curl -s -f -X POST "$BASE/exports" \
  -H "X-Avala-Api-Key: $KEY" \
  -H "Content-Type: application/json" \
  -d '{"project_id": "project_abc123", "format": "json"}' > export.json
id=$(python3 -c 'import json; print(json.load(open("export.json"))["id"])')
for i in 1 2 3 4 5; do
  curl -s -f -H "X-Avala-Api-Key: $KEY" "$BASE/exports/$id" > status.json
  [ "$(python3 -c 'import json; print(json.load(open("status.json"))["status"])')" = "completed" ] && break
done
url=$(python3 -c 'import json; print(json.load(open("status.json"))["download_url"])')
curl -s -f -o "$OUT" "$url"
"#;
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(script)
        .current_dir(dir.path())
        .env("BASE", &base)
        .env("KEY", &key)
        .env("FILE", &file)
        .env("OUT", &out);
    run(command).await;
    let ids = std::fs::read_to_string(dir.path().join("all.txt")).unwrap();
    assert_eq!(
        ids.lines().count(),
        20,
        "every seeded item of dataset_abc123, 4 pages"
    );
    assert_eq!(ids.lines().next(), Some("item_abc123_0001"));
    let item: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("upload.json")).unwrap())
            .unwrap();
    assert_eq!(item["key"], "image.jpg");
    let document: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(document["projects"][0]["uid"], "project_abc123");
    let keys: Vec<&str> = document["datasets"][0]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert_eq!(document["datasets"][0]["uid"], "dataset_abc123");
    assert!(
        keys.contains(&"image.jpg"),
        "the upload is in the export: {keys:?}"
    );
    // The examples' ids stay out of lists: `--datasets 3` lists exactly three.
    let listed: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("list.json")).unwrap())
            .unwrap();
    assert_eq!(listed["total"], 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_item_routes_are_only_served_when_asked_for() {
    for legacy in [false, true] {
        let api = Api::start(EmulatorOptions {
            flavor: Flavor::Current,
            legacy_item_routes: legacy,
            ..Default::default()
        })
        .await;
        let want = if legacy { 200 } else { 404 };
        assert_eq!(api.get("/datasets/ds_0001/items/").await.status, want);
        let uploaded = api.upload("ds_0001", "a.txt", b"abc".to_vec()).await;
        assert_eq!(uploaded.status, if legacy { 201 } else { 405 });
        // Owner/slug routes are unaffected.
        assert_eq!(
            api.get("/datasets/demo/demo-dataset-1/items/").await.status,
            200
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn todays_routes_answer_with_and_without_a_trailing_slash() {
    let api = Api::current().await;
    for path in [
        "/users/me",
        "/datasets",
        "/datasets/ds_0001",
        "/datasets/demo/demo-dataset-1",
        "/datasets/demo/demo-dataset-1/items",
        "/datasets/demo/demo-dataset-1/items/item_0001_0001",
        "/datasets/manual-upload/quota",
        "/datasets/manual-upload/allowed-mimes",
        "/users/me/projects",
        "/users/me/projects/prj_0001",
        "/tasks",
        "/tasks/prj_0001-t1",
        "/exports",
        "/webhooks",
        "/organizations",
        "/datasets/demo/demo-dataset-1/sequences",
    ] {
        assert_eq!(api.get(path).await.status, 200, "{path}");
        assert_eq!(api.get(&format!("{path}/")).await.status, 200, "{path}/");
    }
    assert_eq!(api.get("/datasets/demo/no-such-slug/").await.status, 404);
    assert_eq!(
        api.get("/datasets/someone-else/demo-dataset-1/")
            .await
            .status,
        404
    );
}
