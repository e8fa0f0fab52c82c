//! Blocks: the blocker never sees the blocked user's posts or comments (feed,
//! listings, newest comments, post pages), and the blocked user cannot
//! comment on the blocker's posts.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, comment_bodies as bodies, error_fields, page_ids as ids, problem};

pub async fn put_block(app: &TestApp, token: &str, username: &str) -> reqwest::Response {
    app.client
        .put(app.url(&format!("/v1/me/blocks/{username}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_blocked_users_posts_and_comments_vanish_for_the_blocker_only() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let mallory = app.register("mallory").await;
    let bob = app.register("bob").await;
    let mallorys = app.ready_post(&mallory, "by mallory").await;
    let mallorys = mallorys["id"].as_str().unwrap().to_owned();
    let bobs = app.ready_post(&bob, "by bob").await;
    let bobs = bobs["id"].as_str().unwrap().to_owned();
    let alices = app.ready_post(&alice, "by alice").await;
    let alices = alices["id"].as_str().unwrap().to_owned();
    for (token, body) in [
        (&bob, "b0"),
        (&bob, "b1"),
        (&mallory, "m1"),
        (&mallory, "m2"),
    ] {
        assert_eq!(
            app.comment(token, &bobs, body).await.status(),
            StatusCode::CREATED
        );
    }

    // Refusals first, each changing nothing.
    let own = problem(put_block(&app, &alice, "alice").await, 422).await;
    assert_eq!(error_fields(&own), ["username"]);
    problem(put_block(&app, &alice, "nobody_here").await, 404).await;
    problem(
        app.client
            .put(app.url("/v1/me/blocks/mallory"))
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;
    assert_eq!(
        app.get_json("/v1/me/blocks", Some(&alice)).await["items"],
        json!([])
    );

    assert_eq!(
        put_block(&app, &alice, "Mallory").await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        put_block(&app, &alice, "mallory").await.status(),
        StatusCode::NO_CONTENT,
        "again: nothing changes"
    );
    let blocks = app.get_json("/v1/me/blocks", Some(&alice)).await;
    let names: Vec<&str> = blocks["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mallory"]);

    // The blocker's reads: the feed (first page, and every page), post pages,
    // comment listings, user listings.
    for limit in [20, 1] {
        let feed = app.whole_feed(Some(&alice), limit).await;
        let seen: Vec<&str> = feed.iter().map(|p| p["id"].as_str().unwrap()).collect();
        assert_eq!(seen, [bobs.as_str(), alices.as_str()], "limit {limit}");
        assert_eq!(
            bodies(&feed[0]["last_comments"]),
            ["b1", "b0"],
            "the newest two by others"
        );
        assert_eq!(feed[0]["comment_count"], 4, "the count is the post's");
    }
    problem(
        app.get(&format!("/v1/posts/{mallorys}"), Some(&alice))
            .await,
        404,
    )
    .await;
    let post = app
        .get_json(&format!("/v1/posts/{bobs}"), Some(&alice))
        .await;
    assert_eq!(bodies(&post["last_comments"]), ["b1", "b0"]);
    let listed = app
        .get_json(&format!("/v1/posts/{bobs}/comments"), Some(&alice))
        .await;
    assert_eq!(bodies(&listed["items"]), ["b1", "b0"]);
    let first = app
        .get_json(&format!("/v1/posts/{bobs}/comments?limit=1"), Some(&alice))
        .await;
    assert_eq!(bodies(&first["items"]), ["b1"]);
    let rest = app
        .get_json(
            &format!(
                "/v1/posts/{bobs}/comments?limit=1&cursor={}",
                first["next_cursor"].as_str().unwrap()
            ),
            Some(&alice),
        )
        .await;
    assert_eq!(bodies(&rest["items"]), ["b0"]);
    assert_eq!(rest["next_cursor"], Value::Null);
    assert_eq!(
        app.get_json("/v1/users/mallory/posts", Some(&alice)).await["items"],
        json!([])
    );
    let bobs_listing = app.get_json("/v1/users/bob/posts", Some(&alice)).await;
    assert_eq!(
        bodies(&bobs_listing["items"][0]["last_comments"]),
        ["b1", "b0"]
    );

    // Everyone else sees everything.
    for reader in [None, Some(bob.as_str())] {
        let feed = app.get_json("/v1/posts", reader).await;
        assert_eq!(ids(&feed), [bobs.clone(), alices.clone(), mallorys.clone()]);
        assert_eq!(bodies(&feed["items"][0]["last_comments"]), ["m2", "m1"]);
    }

    // The blocked user cannot comment on the blocker's posts, only elsewhere.
    let refused = problem(app.comment(&mallory, &alices, "hello?").await, 403).await;
    assert!(refused["detail"].as_str().unwrap().contains("author"));
    assert_eq!(
        app.get_json(&format!("/v1/posts/{alices}"), None).await["comment_count"],
        0
    );
    assert_eq!(
        app.comment(&mallory, &bobs, "m3").await.status(),
        StatusCode::CREATED
    );
    let post = app
        .get_json(&format!("/v1/posts/{bobs}"), Some(&alice))
        .await;
    assert_eq!(bodies(&post["last_comments"]), ["b1", "b0"]);

    // Unblocked: all of it is back, at once.
    let resp = app
        .client
        .delete(app.url("/v1/me/blocks/mallory"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let feed = app.get_json("/v1/posts", Some(&alice)).await;
    assert_eq!(ids(&feed), [bobs.clone(), alices.clone(), mallorys.clone()]);
    assert_eq!(bodies(&feed["items"][0]["last_comments"]), ["m3", "m2"]);
    assert_eq!(
        app.comment(&mallory, &alices, "hello again").await.status(),
        StatusCode::CREATED
    );
}

/// A blocker's first page is made from the posts the shared cached page was
/// made from; when they hide all of those it is read on past them, and a
/// comment after it was made shows at once.
#[tokio::test]
async fn a_blockers_first_page_is_exact_whether_or_not_the_cached_top_suffices() {
    let app = TestApp::spawn_with(|a| a.feed_cache_ms = Some(600_000)).await;
    let alice = app.register("alice").await;
    let mallory = app.register("mallory").await;
    let bob = app.register("bob").await;
    let older = app.ready_post_id(&bob, "older by bob").await;
    let newer = app.ready_post_id(&bob, "newer by bob").await;
    // Newer than bob's with as few comments: they rank above.
    let mut mallorys = Vec::new();
    for n in 0..11 {
        let post = app.ready_post(&mallory, &format!("mallory {n}")).await;
        mallorys.push(post["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(put_block(&app, &alice, "mallory").await.status(), 204);
    let anonymous = app.get_json("/v1/posts?limit=1", None).await;
    assert_eq!(
        ids(&anonymous),
        [mallorys[10].as_str()],
        "the shared page is cached"
    );

    // limit 1 and 2: every cached top post is mallory's; 20: they are all there.
    for limit in [1, 2, 20] {
        let page = app
            .get_json(&format!("/v1/posts?limit={limit}"), Some(&alice))
            .await;
        let want: Vec<&str> = [newer.as_str(), older.as_str()]
            .into_iter()
            .take(limit)
            .collect();
        assert_eq!(ids(&page), want, "limit {limit}");
        assert_eq!(page["next_cursor"].is_string(), limit < 2, "limit {limit}");
        let whole: Vec<String> = app
            .whole_feed(Some(&alice), limit as u32)
            .await
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(whole, [newer.clone(), older.clone()], "limit {limit}");
    }

    // Comments move bob's newer post to the top; mallory's are left out of
    // its newest two, and each new one shows on the next read.
    for (token, body) in [(&bob, "b0"), (&mallory, "m0"), (&mallory, "m1")] {
        assert_eq!(app.comment(token, &newer, body).await.status(), 201);
        let page = app.get_json("/v1/posts?limit=20", Some(&alice)).await;
        assert_eq!(ids(&page), [newer.as_str(), older.as_str()]);
        assert_eq!(bodies(&page["items"][0]["last_comments"]), ["b0"]);
    }
    assert_eq!(app.comment(&bob, &newer, "b1").await.status(), 201);
    for limit in [1, 20] {
        let page = app
            .get_json(&format!("/v1/posts?limit={limit}"), Some(&alice))
            .await;
        assert_eq!(bodies(&page["items"][0]["last_comments"]), ["b1", "b0"]);
        assert_eq!(page["items"][0]["comment_count"], 4);
    }
    let shared = app.get_json("/v1/posts?limit=1", None).await;
    assert_eq!(bodies(&shared["items"][0]["last_comments"]), ["b1", "m1"]);

    // A page made for her is kept with the cached posts, by whom she hides:
    // when that changes, so does her page, at once.
    let again = app.get_json("/v1/posts?limit=20", Some(&alice)).await;
    assert_eq!(ids(&again), [newer.as_str(), older.as_str()]);
    assert_eq!(put_block(&app, &alice, "bob").await.status(), 204);
    let page = app.get_json("/v1/posts?limit=20", Some(&alice)).await;
    assert_eq!(page["items"], json!([]), "bob's posts go too");
    let carol = app.register("carol").await;
    assert_eq!(put_block(&app, &carol, "mallory").await.status(), 204);
    let hers = app.get_json("/v1/posts?limit=20", Some(&carol)).await;
    assert_eq!(
        ids(&hers),
        [newer.as_str(), older.as_str()],
        "another reader, the same blocks"
    );
    assert_eq!(bodies(&hers["items"][0]["last_comments"]), ["b1", "b0"]);
    for name in ["bob", "mallory"] {
        let resp = app
            .client
            .delete(app.url(&format!("/v1/me/blocks/{name}")))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204);
    }
    let all = app.get_json("/v1/posts?limit=20", Some(&alice)).await;
    assert_eq!(
        all["items"].as_array().unwrap().len(),
        13,
        "nothing hidden now"
    );
    assert_eq!(bodies(&all["items"][0]["last_comments"]), ["b1", "m1"]);
}

/// Pages past the first are read with the comments that replace the hidden
/// ones among each post's newest: the visible ones stay as stored, older ones
/// fill in, and where more are hidden than were read, the page reads on.
#[tokio::test]
async fn a_blockers_deeper_pages_replace_hidden_comments_exactly() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let mallory = app.register("mallory").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    assert_eq!(put_block(&app, &alice, "mallory").await.status(), 204);
    // Ranked by their counts: 7, 6, 3, 1, 0.
    let top = app.ready_post_id(&bob, "top").await;
    let many = app.ready_post_id(&bob, "hidden three deep").await;
    let mixed = app.ready_post_id(&carol, "one hidden").await;
    let only = app.ready_post_id(&bob, "only hidden").await;
    let none = app.ready_post_id(&carol, "no comments").await;
    let comments: [(&str, &[(&String, &str)]); 4] = [
        (&top, &[(&bob, "t"); 7]),
        (
            &many,
            &[
                (&bob, "b0"),
                (&mallory, "m0"),
                (&bob, "b1"),
                (&mallory, "m1"),
                (&mallory, "m2"),
                (&mallory, "m3"),
            ],
        ),
        (&mixed, &[(&carol, "c0"), (&bob, "b2"), (&mallory, "m4")]),
        (&only, &[(&mallory, "m5")]),
    ];
    for (post, list) in comments {
        for (token, body) in list {
            assert_eq!(app.comment(token, post, body).await.status(), 201);
        }
    }

    let feed = app.whole_feed(Some(&alice), 1).await;
    let seen: Vec<&str> = feed.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(seen, [&top, &many, &mixed, &only, &none]);
    let newest: Vec<Vec<String>> = feed.iter().map(|p| bodies(&p["last_comments"])).collect();
    assert_eq!(
        newest,
        [
            vec!["t", "t"],
            vec!["b1", "b0"],
            vec!["b2", "c0"],
            vec![],
            vec![]
        ]
    );
    for post in &feed {
        let id = post["id"].as_str().unwrap();
        let page = app.get_json(&format!("/v1/posts/{id}"), Some(&alice)).await;
        assert_eq!(post, &page, "the feed shows {id} as its own page does");
    }
    let counts: Vec<i64> = feed
        .iter()
        .map(|p| p["comment_count"].as_i64().unwrap())
        .collect();
    assert_eq!(counts, [7, 6, 3, 1, 0], "counts are the posts'");
    let anyone = app.whole_feed(None, 1).await;
    let shown: Vec<Vec<String>> = anyone.iter().map(|p| bodies(&p["last_comments"])).collect();
    assert_eq!(
        shown[1..4],
        [vec!["m3", "m2"], vec!["m4", "b2"], vec!["m5"]]
    );
}
