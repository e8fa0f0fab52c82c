//! Rate limits: per user (per client address when anonymous), per class, with
//! the IETF RateLimit headers, 429 + Retry-After, and shared across API nodes.

use reqwest::StatusCode;

use crate::helpers::{Backend, Node, TestApp, backend, backend_args, problem, register_at};

fn tight(a: &mut imagegram::config::ServerArgs) {
    a.rate_limit_reads = Some(3);
    a.rate_limit_writes = Some(2);
}

#[tokio::test]
async fn budgets_are_enforced_and_reported() {
    let app = TestApp::spawn_with(tight).await;
    let token = app.register("limited").await; // a write from the anonymous client
    for remaining in [2, 1, 0] {
        let resp = app.get("/v1/me", Some(&token)).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["ratelimit-policy"], "\"reads\";q=3;w=60");
        let state = resp.headers()["ratelimit"].to_str().unwrap().to_owned();
        assert!(
            state.starts_with(&format!("\"reads\";r={remaining};t=")),
            "{state}"
        );
    }
    let resp = app.get("/v1/me", Some(&token)).await;
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    assert!(
        resp.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"reads\";r=0;")
    );
    let p = problem(resp, 429).await;
    assert_eq!(p["type"], "/problems/rate-limited");
    // Other principals and other classes have their own budgets.
    let other = app.register("unlimited").await;
    assert_eq!(
        app.get("/v1/me", Some(&other)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get("/v1/posts", None).await.status(),
        StatusCode::OK,
        "anonymous reads count per client"
    );
    assert_eq!(
        app.delete("/v1/sessions/current", &token).await.status(),
        StatusCode::NO_CONTENT,
        "writes are separate"
    );
    // Probes are never limited.
    for _ in 0..5 {
        assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn limits_can_be_switched_off() {
    let app = TestApp::spawn_with(|a| {
        tight(a);
        a.rate_limit = Some(imagegram::config::OnOff::Off);
    })
    .await;
    for _ in 0..10 {
        let resp = app.get("/v1/posts", None).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(!resp.headers().contains_key("ratelimit"));
    }
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let spoofed = |app: &TestApp, ip: &str| {
        let req = app
            .client
            .get(app.url("/v1/posts"))
            .header("x-forwarded-for", ip);
        async move { req.send().await.unwrap().status() }
    };
    // Untrusted peer: X-Forwarded-For is ignored, so changing it does not buy a new budget.
    let app = TestApp::spawn_with(tight).await;
    for n in 0..3 {
        assert_eq!(spoofed(&app, &format!("1.1.1.{n}")).await, StatusCode::OK);
    }
    assert_eq!(
        spoofed(&app, "1.1.1.9").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Behind a trusted proxy, each forwarded client has its own budget.
    let app = TestApp::spawn_with(|a| {
        tight(a);
        a.trusted_proxies = Some("127.0.0.1".into());
    })
    .await;
    for _ in 0..3 {
        assert_eq!(spoofed(&app, "2.2.2.2").await, StatusCode::OK);
    }
    assert_eq!(
        spoofed(&app, "2.2.2.2").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(spoofed(&app, "3.3.3.3").await, StatusCode::OK);
}

/// On PostgreSQL the budget is shared by every API node; the embedded default
/// is one node, whose limits live in its memory.
#[tokio::test]
async fn api_nodes_share_budgets_when_scaled_out() {
    let dir = tempfile::tempdir().unwrap();
    let backend_flags = backend_args().await;
    let flags = ["--workers", "0", "--rate-limit-reads", "4"];
    let a = Node::serve(dir.path(), &backend_flags, &flags);
    let b = Node::serve(dir.path(), &backend_flags, &flags);
    let token = register_at(&a.base, "spreader").await;
    let client = reqwest::Client::new();
    let get = |base: &str| {
        client
            .get(format!("{base}/v1/me"))
            .bearer_auth(&token)
            .send()
    };
    for base in [&a.base, &b.base, &a.base, &b.base] {
        assert_eq!(get(base).await.unwrap().status(), StatusCode::OK);
    }
    let fifth = get(&b.base).await.unwrap().status();
    match backend() {
        Backend::PostgresS3 => assert_eq!(
            fifth,
            StatusCode::TOO_MANY_REQUESTS,
            "four across two nodes spend the budget"
        ),
        Backend::Embedded => assert_eq!(
            fifth,
            StatusCode::OK,
            "each embedded process counts for itself"
        ),
    }
}
