//! What each request costs PostgreSQL, counted on the wire: the node talks to
//! the database through the fault proxy, which counts the protocol messages
//! its connections send. The counts are the per-scenario table in
//! BENCHMARKS.md ("PostgreSQL at the speed of its engine"); a change that adds
//! a statement or a round trip to a request fails here.

use fault_proxy::{FaultProxy, Faults};
use serde_json::{Value, json};
use sqlx::Connection;

use crate::helpers::{Backend, TestApp, admin_url, backend};

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
        a.database_url = Some(url.to_string());
    })
    .await;
    (app, proxy)
}

/// Statements and round trips of `request`, the fewest over three tries (a
/// sweeper pass or a session lookup may fall into one of them). Round trips
/// leave out the one a statement's first use on a connection adds to prepare it.
async fn cost_of<F, Fut>(proxy: &FaultProxy, mut request: F) -> Cost
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
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
        request().await;
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
    let mut comment_ids = Vec::new();

    let mut costs: Vec<(&str, Cost)> = Vec::new();
    costs.push((
        "single post",
        cost_of(&proxy, || async {
            let r = app.get(&format!("/v1/posts/{post_id}"), None).await;
            assert_eq!(r.status(), 200);
        })
        .await,
    ));
    costs.push((
        "deep page",
        cost_of(&proxy, || async {
            let r = app
                .get(&format!("/v1/posts?limit=20&cursor={cursor}"), None)
                .await;
            assert_eq!(r.status(), 200);
        })
        .await,
    ));
    costs.push((
        "comment (notifies the post's author)",
        cost_of(&proxy, || async {
            let r = app.comment(&reader, &post_id, "counted comment").await;
            assert_eq!(r.status(), 201);
        })
        .await,
    ));
    costs.push((
        "comment on one's own post",
        cost_of(&proxy, || async {
            let r = app.comment(&author, &post_id, "own comment").await;
            assert_eq!(r.status(), 201);
        })
        .await,
    ));
    for _ in 0..6 {
        let r = app.comment(&reader, &post_id, "to delete").await;
        let c: Value = r.json().await.unwrap();
        comment_ids.push(c["id"].as_str().unwrap().to_owned());
    }
    for _ in 0..3 {
        app.comment(&author, &post_id, "newer").await;
    }
    let mut older = comment_ids.clone().into_iter();
    costs.push((
        "comment delete (not among the newest two)",
        cost_of(&proxy, || {
            let id = older.next().unwrap();
            let app = &app;
            let (reader, post_id) = (&reader, &post_id);
            async move {
                let r = app
                    .delete(&format!("/v1/posts/{post_id}/comments/{id}"), reader)
                    .await;
                assert_eq!(r.status(), 204);
            }
        })
        .await,
    ));
    let idempotent = json!({"body": "with a key"});
    let mut n = 0;
    costs.push((
        "comment with an Idempotency-Key",
        cost_of(&proxy, || {
            n += 1;
            let (app, reader, post_id, body) = (&app, &reader, &post_id, &idempotent);
            async move {
                let r = app
                    .client
                    .post(app.url(&format!("/v1/posts/{post_id}/comments")))
                    .bearer_auth(reader)
                    .header("Idempotency-Key", format!("counted-{n}"))
                    .json(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
            }
        })
        .await,
    ));
    for _ in 0..3 {
        app.comment(&reader, &post_id, "newest").await;
    }
    let listed: Value = app
        .get_json(&format!("/v1/posts/{post_id}/comments?limit=3"), None)
        .await;
    let mut newest = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .into_iter();
    costs.push((
        "comment delete (one of the newest two)",
        cost_of(&proxy, || {
            let id = newest.next().unwrap();
            let (app, reader, post_id) = (&app, &reader, &post_id);
            async move {
                let r = app
                    .delete(&format!("/v1/posts/{post_id}/comments/{id}"), reader)
                    .await;
                assert_eq!(r.status(), 204);
            }
        })
        .await,
    ));

    // The fewest each needs (BENCHMARKS.md says why): one round trip per
    // statement, none to hand out or take back a pooled connection.
    let expected = [
        ("single post", 1, 1),
        ("deep page", 1, 1),
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
