//! Reports and moderation, black-box: filing reports, the moderators' queue,
//! dismissing and taking down, the audit log, and 403 for everyone else.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::events::Sse;
use crate::helpers::{TestApp, error_fields, jpeg, problem};

async fn report(
    app: &TestApp,
    token: &str,
    kind: &str,
    id: &str,
    reason: &str,
) -> reqwest::Response {
    app.post_json(
        "/v1/reports",
        Some(token),
        json!({"target": {"type": kind, "id": id}, "reason": reason, "note": "please look"}),
    )
    .await
}

async fn resolve(app: &TestApp, token: &str, report_id: &str, body: Value) -> reqwest::Response {
    app.post_json(
        &format!("/v1/moderation/reports/{report_id}/resolve"),
        Some(token),
        body,
    )
    .await
}

/// Makes `name` a moderator as the operator would (`imagegram admin set-role`,
/// whose own test is in admin.rs).
async fn moderator(app: &TestApp, name: &str) -> String {
    let token = app.register(name).await;
    app.services()
        .set_role(&imagegram::service::Actor::Operator, name, "moderator")
        .await
        .unwrap();
    token
}

#[tokio::test]
async fn a_report_is_filed_once_per_reporter_and_target() {
    let app = TestApp::spawn().await;
    let author = app.register("author").await;
    let reporter = app.register("reporter").await;
    let other = app.register("other").await;
    let post = app.ready_post(&author, "a post").await;
    let post_id = post["id"].as_str().unwrap();
    let comment: Value = app
        .comment(&author, post_id, "a comment")
        .await
        .json()
        .await
        .unwrap();
    let comment_id = comment["id"].as_str().unwrap();

    let first = report(&app, &reporter, "post", post_id, "spam").await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["target"], json!({"type": "post", "id": post_id}));
    assert_eq!(first["reason"], "spam");
    assert_eq!(first["note"], "please look");
    assert_eq!(first["status"], "open");
    assert!(first["created_at"].is_string());
    assert!(
        !first.to_string().contains("reporter"),
        "the reporter is not in it: {first}"
    );

    let again = report(&app, &reporter, "post", post_id, "nudity").await;
    assert_eq!(
        again.status(),
        StatusCode::OK,
        "the open report is found, not doubled"
    );
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["reason"], "spam", "the report as filed");

    let by_other: Value = report(&app, &other, "post", post_id, "spam")
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(by_other["id"], first["id"], "each reporter has their own");
    assert_eq!(
        report(&app, &reporter, "comment", comment_id, "harassment")
            .await
            .status(),
        StatusCode::CREATED
    );

    // Refusals, each changing nothing.
    let own = problem(report(&app, &author, "post", post_id, "spam").await, 422).await;
    assert_eq!(error_fields(&own), ["target"]);
    let bad = problem(
        app.post_json(
            "/v1/reports",
            Some(&reporter),
            json!({"target": {"type": "user", "id": "nope"}, "reason": "rude", "note": "x".repeat(1001)}),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(
        error_fields(&bad),
        ["target.type", "target.id", "reason", "note"]
    );
    let control = problem(
        app.post_json(
            "/v1/reports",
            Some(&reporter),
            json!({"target": {"type": "post", "id": post_id}, "reason": "other", "note": "a\u{1b}b"}),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(error_fields(&control), ["note"]);
    let unknown = uuid::Uuid::now_v7().to_string();
    problem(report(&app, &reporter, "post", &unknown, "spam").await, 404).await;
    problem(
        report(&app, &reporter, "comment", &unknown, "spam").await,
        404,
    )
    .await;
    problem(
        app.post_json(
            "/v1/reports",
            None,
            json!({"target": {"type": "post", "id": post_id}, "reason": "spam"}),
        )
        .await,
        401,
    )
    .await;

    // A keyed retry gets the original answer.
    let keyed = |key: &'static str| {
        app.client
            .post(app.url("/v1/reports"))
            .bearer_auth(&other)
            .header("idempotency-key", key)
            .json(&json!({"target": {"type": "comment", "id": comment_id}, "reason": "spam"}))
            .send()
    };
    let a = keyed("report-1").await.unwrap();
    assert_eq!(a.status(), StatusCode::CREATED);
    let a: Value = a.json().await.unwrap();
    let b = keyed("report-1").await.unwrap();
    assert_eq!(
        b.status(),
        StatusCode::CREATED,
        "the original answer, replayed"
    );
    assert_eq!(b.json::<Value>().await.unwrap(), a);

    // What moderators see: two targets, the post's with two reports.
    let moderator = moderator(&app, "watcher").await;
    let queue = app
        .get_json("/v1/moderation/reports", Some(&moderator))
        .await;
    let items = queue["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{queue}");
    assert_eq!(items[0]["target"]["id"], post_id, "oldest first");
    assert_eq!(items[0]["report_count"], 2);
    assert_eq!(items[1]["report_count"], 2);
    let text = queue.to_string();
    assert!(
        !text.contains("reporter") && !text.contains("\"other\""),
        "reporters are never shown: {text}"
    );
}

#[tokio::test]
async fn moderators_dismiss_and_take_down_and_everything_is_audited() {
    let app = TestApp::spawn().await;
    let author = app.register("poster").await;
    let commenter = app.register("chatter").await;
    let rep1 = app.register("rep_one").await;
    let rep2 = app.register("rep_two").await;
    let mod_token = moderator(&app, "mod").await;

    let bad_post = app.ready_post(&author, "a bad post").await;
    let bad_id = bad_post["id"].as_str().unwrap().to_owned();
    let kept = app.ready_post(&author, "a fine post").await;
    let kept_id = kept["id"].as_str().unwrap().to_owned();
    let mut comment_ids = Vec::new();
    for body in ["first", "second", "third"] {
        let c: Value = app
            .comment(&commenter, &kept_id, body)
            .await
            .json()
            .await
            .unwrap();
        comment_ids.push(c["id"].as_str().unwrap().to_owned());
    }

    let post_report: Value = report(&app, &rep1, "post", &bad_id, "spam")
        .await
        .json()
        .await
        .unwrap();
    report(&app, &rep2, "post", &bad_id, "nudity").await;
    let newest_comment = &comment_ids[2];
    let comment_report: Value = report(&app, &rep1, "comment", newest_comment, "harassment")
        .await
        .json()
        .await
        .unwrap();
    let first_comment = &comment_ids[0];
    let dismissable: Value = report(&app, &rep2, "comment", first_comment, "other")
        .await
        .json()
        .await
        .unwrap();

    // Only moderators: everyone else is refused on every moderation route.
    for token in [&author, &rep1] {
        problem(app.get("/v1/moderation/reports", Some(token)).await, 403).await;
        problem(app.get("/v1/moderation/audit", Some(token)).await, 403).await;
        problem(
            resolve(
                &app,
                token,
                post_report["id"].as_str().unwrap(),
                json!({"action": "remove"}),
            )
            .await,
            403,
        )
        .await;
    }
    problem(app.get("/v1/moderation/reports", None).await, 401).await;
    assert_eq!(
        app.get(&format!("/v1/posts/{bad_id}"), None).await.status(),
        200,
        "refusals change nothing"
    );

    // The queue, oldest first, a page at a time.
    let page = app
        .get("/v1/moderation/reports?limit=1", Some(&mod_token))
        .await;
    assert!(page.headers().contains_key("link"));
    let page: Value = page.json().await.unwrap();
    let group = &page["items"][0];
    assert_eq!(group["id"], post_report["id"]);
    assert_eq!(group["target"], json!({"type": "post", "id": bad_id}));
    assert_eq!(group["status"], "open");
    assert_eq!(group["report_count"], 2);
    assert_eq!(group["reasons"], json!(["spam", "nudity"]));
    assert_eq!(group["snapshot"]["text"], "a bad post");
    assert_eq!(group["snapshot"]["author"]["username"], "poster");
    assert_eq!(group["snapshot"]["image_url"], bad_post["image"]["url"]);
    let rest = app
        .get_json(
            &format!(
                "/v1/moderation/reports?limit=10&cursor={}",
                page["next_cursor"].as_str().unwrap()
            ),
            Some(&mod_token),
        )
        .await;
    let rest = rest["items"].as_array().unwrap();
    assert_eq!(rest.len(), 2);
    assert_eq!(rest[0]["snapshot"]["text"], "third");
    assert_eq!(rest[0]["snapshot"]["post_id"], kept_id.as_str());
    problem(
        app.get("/v1/moderation/reports?status=closed", Some(&mod_token))
            .await,
        422,
    )
    .await;
    problem(
        app.get("/v1/moderation/reports?cursor=forged", Some(&mod_token))
            .await,
        400,
    )
    .await;

    // Bad decisions are refused and change nothing.
    let invalid = problem(
        resolve(
            &app,
            &mod_token,
            post_report["id"].as_str().unwrap(),
            json!({"action": "delete"}),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(error_fields(&invalid), ["action"]);
    problem(
        resolve(
            &app,
            &mod_token,
            &uuid::Uuid::now_v7().to_string(),
            json!({"action": "dismiss"}),
        )
        .await,
        404,
    )
    .await;

    // Dismiss: the comment stays, its report closes.
    let done = resolve(
        &app,
        &mod_token,
        dismissable["id"].as_str().unwrap(),
        json!({"action": "dismiss", "note": "fine"}),
    )
    .await;
    assert_eq!(done.status(), StatusCode::OK);
    let done: Value = done.json().await.unwrap();
    assert_eq!(done["reports_closed"], 1);
    problem(
        resolve(
            &app,
            &mod_token,
            dismissable["id"].as_str().unwrap(),
            json!({"action": "remove"}),
        )
        .await,
        409,
    )
    .await;

    // Remove a post: gone from every read, its author told.
    let mut events = Sse::open(&app, &author, None).await;
    let done: Value = resolve(
        &app,
        &mod_token,
        post_report["id"].as_str().unwrap(),
        json!({"action": "remove", "note": "spam"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(done["reports_closed"], 2, "every open report on it");
    problem(app.get(&format!("/v1/posts/{bad_id}"), None).await, 404).await;
    problem(
        app.get(&format!("/v1/posts/{bad_id}"), Some(&author)).await,
        404,
    )
    .await;
    let feed = app.get_json("/v1/posts", None).await;
    assert!(
        feed["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["id"] != bad_id.as_str())
    );
    let mine = app.get_json("/v1/users/poster/posts", None).await;
    assert!(
        mine["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["id"] != bad_id.as_str())
    );
    let image_key = bad_post["image"]["url"]
        .as_str()
        .unwrap()
        .trim_start_matches("/v1/images/")
        .trim_end_matches(".jpg");
    assert!(
        app.blob(&format!("derived/{image_key}.jpg"))
            .await
            .is_none(),
        "its blobs are purged"
    );
    loop {
        let event = events
            .next(Duration::from_secs(20))
            .await
            .expect("a post.removed event");
        if event.kind == "post.removed" {
            assert_eq!(event.data["post_id"], bad_id.as_str());
            break;
        }
    }

    // Remove the newest comment: the post's count and newest two stay exact.
    let done: Value = resolve(
        &app,
        &mod_token,
        comment_report["id"].as_str().unwrap(),
        json!({"action": "remove"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(done["reports_closed"], 1);
    let post = app.get_json(&format!("/v1/posts/{kept_id}"), None).await;
    assert_eq!(post["comment_count"], 2);
    let last: Vec<&str> = post["last_comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap())
        .collect();
    assert_eq!(last, ["second", "first"]);
    let listed = app
        .get_json(&format!("/v1/posts/{kept_id}/comments"), None)
        .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);

    // Nothing is open; the resolved view has all three targets.
    let open = app
        .get_json("/v1/moderation/reports", Some(&mod_token))
        .await;
    assert_eq!(open["items"], json!([]));
    let resolved = app
        .get_json("/v1/moderation/reports?status=resolved", Some(&mod_token))
        .await;
    assert_eq!(resolved["items"].as_array().unwrap().len(), 3);
    assert!(
        resolved["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["status"] == "resolved")
    );

    // The audit log, newest first: two removals, a dismissal, the role grant.
    let audit = app.get_json("/v1/moderation/audit", Some(&mod_token)).await;
    let entries = audit["items"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["remove", "remove", "dismiss", "set-role"]);
    assert_eq!(entries[0]["moderator"], "mod");
    assert_eq!(
        entries[0]["target"],
        json!({"type": "comment", "id": newest_comment})
    );
    assert_eq!(entries[1]["note"], "spam");
    assert_eq!(entries[2]["note"], "fine");
    assert_eq!(entries[3]["moderator"], "(operator)");
    assert_eq!(entries[3]["target"]["username"], "mod");
    assert!(
        entries
            .iter()
            .all(|e| e["id"].is_string() && e["created_at"].is_string())
    );
}

#[tokio::test]
async fn a_banned_image_is_refused_however_it_is_uploaded_again() {
    let app = TestApp::spawn().await;
    let author = app.register("repeater").await;
    let reporter = app.register("noticer").await;
    let mod_token = moderator(&app, "banner").await;
    let bytes = jpeg(80, 60);
    let resp = app
        .upload(&author, &[("caption", "banned soon")], Some(bytes.clone()))
        .await;
    let post: Value = resp.json().await.unwrap();
    let post_id = post["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&author, &post_id, "ready").await;
    let comment: Value = app
        .comment(&reporter, &post_id, "a comment")
        .await
        .json()
        .await
        .unwrap();
    let on_post: Value = report(&app, &reporter, "post", &post_id, "illegal")
        .await
        .json()
        .await
        .unwrap();
    let on_comment: Value = report(
        &app,
        &author,
        "comment",
        comment["id"].as_str().unwrap(),
        "spam",
    )
    .await
    .json()
    .await
    .unwrap();

    // A ban needs a post taken down.
    for (report_id, action) in [(&on_post, "dismiss"), (&on_comment, "remove")] {
        let refused = problem(
            resolve(
                &app,
                &mod_token,
                report_id["id"].as_str().unwrap(),
                json!({"action": action, "ban_image": true}),
            )
            .await,
            422,
        )
        .await;
        assert_eq!(error_fields(&refused), ["ban_image"]);
    }
    let done = resolve(
        &app,
        &mod_token,
        on_post["id"].as_str().unwrap(),
        json!({"action": "remove", "ban_image": true}),
    )
    .await;
    assert_eq!(done.status(), StatusCode::OK);

    // The same bytes again, as a form upload and as a resumable one: refused.
    let again = problem(
        app.upload(&author, &[("caption", "again")], Some(bytes.clone()))
            .await,
        422,
    )
    .await;
    assert_eq!(again["type"], "/problems/image-banned");
    let location = crate::uploads::create(&app, &author, bytes.len()).await;
    assert_eq!(
        crate::uploads::patch(&app, &author, &location, 0, &bytes)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let upload_id = location.rsplit('/').next().unwrap();
    let again = problem(
        app.post_json(
            "/v1/posts",
            Some(&author),
            json!({"upload_id": upload_id, "caption": "sneaky"}),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(again["type"], "/problems/image-banned");
    assert_eq!(
        app.get_json("/v1/users/repeater/posts", None).await["items"],
        json!([])
    );
    // Other bytes are fine, and so is anyone else's different photo.
    let other = app
        .upload(
            &author,
            &[("caption", "a different photo")],
            Some(jpeg(81, 60)),
        )
        .await;
    assert_eq!(other.status(), StatusCode::ACCEPTED);
}
