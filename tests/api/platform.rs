//! Cross-cutting behaviour: request ids, problems for unknown routes, probes, compression.

use reqwest::StatusCode;

use crate::helpers::{Backend, TestApp, backend, problem};

#[tokio::test]
async fn request_ids_are_echoed_when_sane() {
    let app = TestApp::spawn().await;
    let resp = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "client-abc.123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "client-abc.123");
    let resp = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    let id = resp.headers()["x-request-id"].to_str().unwrap();
    assert!(!id.is_empty() && id != "bad id with spaces");
    let a = app.get("/healthz", None).await.headers()["x-request-id"].clone();
    let b = app.get("/healthz", None).await.headers()["x-request-id"].clone();
    assert_ne!(a, b);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let app = TestApp::spawn().await;
    problem(app.get("/v1/nothing-here", None).await, 404).await;
    let resp = app.client.put(app.url("/v1/posts")).send().await.unwrap();
    problem(resp, 405).await;
}

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
    assert_eq!(app.get("/readyz", None).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn readiness_fails_when_the_blob_store_is_gone() {
    let app = match backend() {
        Backend::Embedded => {
            let app = TestApp::spawn().await;
            std::fs::remove_dir_all(app.data_dir.join("blobs")).unwrap();
            app
        }
        Backend::PostgresS3 => {
            TestApp::spawn_with(|a| a.blob_url = Some("s3://no-such-bucket-for-imagegram".into()))
                .await
        }
    };
    problem(app.get("/readyz", None).await, 503).await;
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn json_is_compressed_when_accepted() {
    let app = TestApp::spawn().await;
    let token = app.register("squeeze").await;
    for n in 0..3 {
        app.ready_post(
            &token,
            &format!("a fairly long caption number {n} to make the page compressible"),
        )
        .await;
    }
    for encoding in ["gzip", "br", "zstd"] {
        let resp = app
            .client
            .get(app.url("/v1/posts"))
            .header("accept-encoding", encoding)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["content-encoding"], encoding);
    }
}

#[tokio::test]
async fn metrics_are_exposed_for_prometheus() {
    let app = TestApp::spawn_with(|a| a.rate_limit_writes = Some(1)).await;
    let token = app.register("measured").await; // spends the anonymous client's one write
    app.ready_post(&token, "counted").await;
    let limited = app
        .post_json(
            "/v1/users",
            None,
            serde_json::json!({"username": "second", "password": "12345678"}),
        )
        .await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let resp = app.get("/metrics", None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = resp.text().await.unwrap();
    for needle in [
        "http_requests_total{method=\"GET\",route=\"/v1/posts/{id}\",status=\"200\"}",
        "http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/posts\"",
        "image_processing_seconds_count{format=\"jpeg\",outcome=\"ready\"}",
        "image_jobs_queued",
        "image_jobs_oldest_age_seconds",
        "upload_bytes_total{kind=\"multipart\"}",
        "rate_limit_rejections_total{class=\"writes\"}",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let app = TestApp::spawn().await;
    let resp = app.get("/v1/openapi.json", None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let doc: serde_json::Value = resp.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    // The document is made from the route list itself (api::routes). It must
    // describe exactly the API's operations, and every operation it describes
    // must be served by the running binary.
    let mut described = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            described.push((path.clone(), method.to_uppercase()));
        }
    }
    let mut expected: Vec<(String, String)> = [
        ("/v1/users", "POST"),
        ("/v1/sessions", "POST"),
        ("/v1/sessions/current", "DELETE"),
        ("/v1/me", "GET"),
        ("/v1/me", "DELETE"),
        ("/v1/me/exports", "POST"),
        ("/v1/me/exports/{id}", "GET"),
        ("/v1/me/exports/{id}/download", "GET"),
        ("/v1/me/sessions", "GET"),
        ("/v1/me/sessions/{id}", "DELETE"),
        ("/v1/me/password", "PUT"),
        ("/v1/admin/users/{username}/role", "PUT"),
        ("/v1/reports", "POST"),
        ("/v1/me/blocks", "GET"),
        ("/v1/me/blocks/{username}", "PUT"),
        ("/v1/me/blocks/{username}", "DELETE"),
        ("/v1/moderation/reports", "GET"),
        ("/v1/moderation/reports/{id}/resolve", "POST"),
        ("/v1/moderation/users/{username}/reinstate", "POST"),
        ("/v1/moderation/audit", "GET"),
        ("/v1/posts", "GET"),
        ("/v1/posts", "POST"),
        ("/v1/posts/{id}", "GET"),
        ("/v1/posts/{id}", "PATCH"),
        ("/v1/posts/{id}", "DELETE"),
        ("/v1/users/{username}/posts", "GET"),
        ("/v1/posts/{id}/comments", "GET"),
        ("/v1/posts/{id}/comments", "POST"),
        ("/v1/posts/{post_id}/comments/{comment_id}", "DELETE"),
        ("/v1/images/{file}", "GET"),
        ("/v1/uploads", "OPTIONS"),
        ("/v1/uploads", "POST"),
        ("/v1/uploads/{id}", "HEAD"),
        ("/v1/uploads/{id}", "PATCH"),
        ("/v1/uploads/{id}", "DELETE"),
        ("/v1/events", "GET"),
        ("/v1/openapi.json", "GET"),
        ("/healthz", "GET"),
        ("/readyz", "GET"),
        ("/metrics", "GET"),
    ]
    .iter()
    .map(|(p, m)| (p.to_string(), m.to_string()))
    .collect();
    expected.sort();
    described.sort();
    assert_eq!(described, expected, "the operations the document describes");
    for (path, method) in &described {
        let concrete = path
            .split('/')
            .map(|seg| {
                if seg.starts_with('{') {
                    "00000000-0000-0000-0000-000000000000"
                } else {
                    seg
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let resp = app
            .client
            .request(method.clone(), app.url(&concrete))
            .header("tus-resumable", "1.0.0")
            .send()
            .await
            .unwrap();
        assert_ne!(
            resp.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        let body = resp.text().await.unwrap_or_default();
        assert!(
            !body.contains("no such resource"),
            "{method} {path} is described but not routed: {body}"
        );
    }
    for schema in [
        "Post",
        "Comment",
        "User",
        "Problem",
        "Session",
        "FieldError",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema}"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}
