//! What each request costs PostgreSQL, counted on the wire: the node talks to
//! the database through the fault proxy, which counts the protocol messages
//! its connections send. The counts are the per-scenario table in
//! BENCHMARKS.md ("PostgreSQL at the speed of its engine"); a change that adds
//! a statement or a round trip to a request fails here.

use fault_proxy::{FaultProxy, Faults};
use futures_util::FutureExt;
use serde_json::{Value, json};
use sqlx::Connection;

use crate::helpers::{Backend, TestApp, admin_url, backend, widest_text};

/// Statements executed and round trips waited for by one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cost {
    statements: u64,
    round_trips: u64,
}

/// A node whose database connections go through a counting proxy, with rate
/// limits off as in the load benchmark (with them on, each request also runs
/// the one-statement rate check).
async fn counted_node() -> (TestApp, FaultProxy) {
    proxied_node(true).await
}

/// A node whose database connections go through the fault proxy, with rate
/// limits off. Without `reuse_statements` each statement's SQL crosses the
/// wire every time (the proxy can then tell statements apart).
pub(crate) async fn proxied_node(reuse_statements: bool) -> (TestApp, FaultProxy) {
    let admin = reqwest::Url::parse(&admin_url()).unwrap();
    let upstream =
        tokio::net::lookup_host((admin.host_str().unwrap(), admin.port().unwrap_or(5432)))
            .await
            .unwrap()
            .next()
            .unwrap();
    let proxy = FaultProxy::start(
        upstream,
        Faults {
            postgres: true,
            ..Faults::default()
        },
    )
    .await
    .unwrap();
    let app = TestApp::spawn_with(|a| {
        a.rate_limit = Some(imagegram::config::OnOff::Off);
        let mut url = reqwest::Url::parse(a.database_url.as_deref().expect("postgres")).unwrap();
        url.set_ip_host(proxy.addr().ip()).unwrap();
        url.set_port(Some(proxy.addr().port())).unwrap();
        // The proxy reads the protocol, so the connection stays unencrypted.
        url.query_pairs_mut().append_pair("sslmode", "disable");
        if !reuse_statements {
            url.query_pairs_mut()
                .append_pair("statement-cache-capacity", "0");
        }
        a.database_url = Some(url.to_string());
    })
    .await;
    (app, proxy)
}

/// Statements and round trips of `request`, which must answer `status`: the
/// fewest over three tries (a sweeper pass or a session lookup may fall into
/// one of them). Round trips leave out the one a statement's first use on a
/// connection adds to prepare it.
async fn cost_of<F, Fut>(proxy: &FaultProxy, status: u16, mut request: F) -> Cost
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = reqwest::Response>,
{
    let mut fewest = Cost {
        statements: u64::MAX,
        round_trips: u64::MAX,
    };
    for _ in 0..3 {
        let (s0, r0, p0) = (
            proxy.pg_statements(),
            proxy.pg_round_trips(),
            proxy.pg_messages(b'P'),
        );
        assert_eq!(request().await.status(), status);
        let statements = proxy.pg_statements() - s0;
        let round_trips = (proxy.pg_round_trips() - r0) - (proxy.pg_messages(b'P') - p0);
        fewest.statements = fewest.statements.min(statements);
        fewest.round_trips = fewest.round_trips.min(round_trips);
    }
    fewest
}

#[tokio::test]
async fn each_request_costs_postgresql_the_fewest_statements_and_round_trips() {
    if backend() != Backend::PostgresS3 {
        return; // counted on the wire to PostgreSQL; SQLite has no wire
    }
    let (app, proxy) = counted_node().await;
    let author = app.register("counted_author").await;
    let reader = app.register("counted_reader").await;
    let post = app.ready_post(&author, "counted").await;
    let post_id = post["id"].as_str().unwrap().to_owned();
    for i in 0..30 {
        let other = app.ready_post(&author, &format!("filler {i}")).await;
        app.comment(&reader, other["id"].as_str().unwrap(), "a filler comment")
            .await;
    }
    let page: Value = app.get_json("/v1/posts?limit=5", None).await;
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let post_path = format!("/v1/posts/{post_id}");
    let deep_path = format!("/v1/posts?limit=20&cursor={cursor}");
    let delete_path = |id: &str| format!("/v1/posts/{post_id}/comments/{id}");
    let mut costs: Vec<(&str, Cost)> = Vec::new();
    costs.push((
        "single post",
        cost_of(&proxy, 200, || app.get(&post_path, None)).await,
    ));
    costs.push((
        "deep page",
        cost_of(&proxy, 200, || app.get(&deep_path, None)).await,
    ));
    // A post on the page whose rendering is too long for the feed index
    // (migration 0019): the page's one statement reads it from the table.
    let deep_page: Value = app.get_json(&deep_path, None).await;
    let long = deep_page["items"][0]["id"].as_str().unwrap().to_owned();
    app.edit_caption(&author, &long, &widest_text(2_200)).await;
    costs.push((
        "deep page, one post too long for the index",
        cost_of(&proxy, 200, || app.get(&deep_path, None)).await,
    ));
    costs.push((
        "comment (notifies the post's author)",
        cost_of(&proxy, 201, || app.comment(&reader, &post_id, "counted")).await,
    ));
    costs.push((
        "comment on one's own post",
        cost_of(&proxy, 201, || app.comment(&author, &post_id, "own")).await,
    ));
    let older = comments_made(&app, &reader, &post_id, 3).await;
    for _ in 0..3 {
        app.comment(&author, &post_id, "newer").await;
    }
    costs.push((
        "comment delete (not among the newest two)",
        deletions_cost(&proxy, &app, &reader, older.iter().map(|c| delete_path(c))).await,
    ));
    let keyed = json!({"body": "with a key"});
    let mut n = 0;
    costs.push((
        "comment with an Idempotency-Key",
        cost_of(&proxy, 201, || {
            n += 1;
            app.client
                .post(app.url(&format!("/v1/posts/{post_id}/comments")))
                .bearer_auth(&reader)
                .header("Idempotency-Key", format!("counted-{n}"))
                .json(&keyed)
                .send()
                .map(Result::unwrap)
        })
        .await,
    ));
    // Deleted newest first, each is the newest when it goes.
    let mut newest = comments_made(&app, &reader, &post_id, 3)
        .await
        .into_iter()
        .rev();
    costs.push((
        "comment delete (one of the newest two)",
        cost_of(&proxy, 204, || {
            let path = delete_path(&newest.next().unwrap());
            let (app, reader) = (&app, &reader);
            async move { app.delete(&path, reader).await }
        })
        .await,
    ));

    // The fewest each needs (BENCHMARKS.md says why): one round trip per
    // statement, none to hand out or take back a pooled connection.
    let expected = [
        ("single post", 1, 1),
        ("deep page", 1, 1),
        ("deep page, one post too long for the index", 1, 1),
        ("comment (notifies the post's author)", 2, 2),
        ("comment on one's own post", 2, 2),
        ("comment delete (not among the newest two)", 2, 2),
        ("comment with an Idempotency-Key", 3, 3),
        ("comment delete (one of the newest two)", 3, 3),
    ];
    let report: Vec<String> = costs
        .iter()
        .map(|(name, c)| {
            format!(
                "{name}: {} statements, {} round trips",
                c.statements, c.round_trips
            )
        })
        .collect();
    let measured: Vec<(&str, u64, u64)> = costs
        .iter()
        .map(|(name, c)| (*name, c.statements, c.round_trips))
        .collect();
    assert_eq!(measured, expected, "{}", report.join("\n"));

    // The event a comment writes in its one statement has the key
    // `store::event_key` gives (the statement builds it in SQL).
    let mut db = sqlx::PgConnection::connect(app.database_url.as_deref().unwrap())
        .await
        .unwrap();
    let keys: Vec<(String, uuid::Uuid, i64)> =
        sqlx::query_as("SELECT key, user_id, seq FROM events WHERE kind = 'comment.created'")
            .fetch_all(&mut db)
            .await
            .unwrap();
    assert!(keys.len() >= 3, "the comments notified the author");
    for (key, user, seq) in keys {
        assert_eq!(key, imagegram::store::event_key(&user, seq));
    }
}

/// `n` comments by `token` on `post_id`, oldest first.
async fn comments_made(app: &TestApp, token: &str, post_id: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let c: Value = app
            .comment(token, post_id, "made")
            .await
            .json()
            .await
            .unwrap();
        ids.push(c["id"].as_str().unwrap().to_owned());
    }
    ids
}

/// `cost_of` a deletion, each try deleting the next of `paths`.
async fn deletions_cost(
    proxy: &FaultProxy,
    app: &TestApp,
    token: &str,
    paths: impl Iterator<Item = String>,
) -> Cost {
    let mut paths = paths;
    cost_of(proxy, 204, || {
        let path = paths.next().expect("a comment per try");
        async move { app.delete(&path, token).await }
    })
    .await
}
