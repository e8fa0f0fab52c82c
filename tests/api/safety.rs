//! Reports and moderation, black-box: filing reports, the moderators' queue,
//! dismissing and taking down, the audit log, and 403 for everyone else.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::events::Sse;
use crate::helpers::{TestApp, comment_bodies, error_fields, jpeg, login_at, page_ids, problem};

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

/// `suspend` takes the reported content down and suspends its author: their
/// tokens and log-in are refused, everything they made is hidden from every
/// read (counts and newest comments of others' posts stay exact), staff cannot
/// be suspended, and `reinstate` brings all of it back.
#[tokio::test]
async fn a_suspended_author_vanishes_until_reinstated() {
    let app = TestApp::spawn().await;
    let spammer = app.register("spammer").await;
    let victim = app.register("victim").await;
    let reporter = app.register("reporter").await;
    let mod_token = moderator(&app, "warden").await;

    let reported = app.ready_post(&spammer, "buy now").await;
    let reported_id = reported["id"].as_str().unwrap().to_owned();
    let other = app.ready_post(&spammer, "another ad").await;
    let other_id = other["id"].as_str().unwrap().to_owned();
    let victims = app.ready_post(&victim, "my holiday").await;
    let victims_id = victims["id"].as_str().unwrap().to_owned();
    for (token, body) in [
        (&victim, "first by victim"),
        (&spammer, "spam one"),
        (&reporter, "by reporter"),
        (&spammer, "spam two"),
    ] {
        assert_eq!(app.comment(token, &victims_id, body).await.status(), 201);
    }
    let filed: Value = report(&app, &reporter, "post", &reported_id, "spam")
        .await
        .json()
        .await
        .unwrap();
    let filed_id = filed["id"].as_str().unwrap();

    // Only moderators reinstate.
    for token in [&victim, &reporter] {
        problem(
            app.post_json(
                "/v1/moderation/users/spammer/reinstate",
                Some(token),
                json!({}),
            )
            .await,
            403,
        )
        .await;
    }
    problem(
        app.post_json(
            "/v1/moderation/users/victim/reinstate",
            Some(&mod_token),
            json!({}),
        )
        .await,
        409,
    )
    .await;

    let done = resolve(
        &app,
        &mod_token,
        filed_id,
        json!({"action": "suspend", "note": "ads"}),
    )
    .await;
    assert_eq!(done.status(), StatusCode::OK);
    let done: Value = done.json().await.unwrap();
    assert_eq!(done["action"], "suspend");
    assert_eq!(done["reports_closed"], 1);

    // Their token and their log-in are refused.
    problem(app.get("/v1/me", Some(&spammer)).await, 401).await;
    problem(app.comment(&spammer, &victims_id, "more spam").await, 401).await;
    let login = app
        .post_json(
            "/v1/sessions",
            None,
            json!({"username": "spammer", "password": "correct horse"}),
        )
        .await;
    let refused = problem(login, 403).await;
    assert!(
        refused["type"]
            .as_str()
            .unwrap()
            .ends_with("/problems/suspended"),
        "{refused}"
    );
    let wrong = app
        .post_json(
            "/v1/sessions",
            None,
            json!({"username": "spammer", "password": "wrong horse"}),
        )
        .await;
    problem(wrong, 401).await;

    // Everything they made is hidden, from everyone.
    spammer_shown(&app, &victim, &other_id, &victims_id, false).await;
    problem(
        app.get(&format!("/v1/posts/{reported_id}"), None).await,
        404,
    )
    .await;

    // Staff cannot be suspended; the refusal changes nothing.
    let staff_post = app.ready_post(&mod_token, "house rules").await;
    let staff_report: Value = report(
        &app,
        &reporter,
        "post",
        staff_post["id"].as_str().unwrap(),
        "other",
    )
    .await
    .json()
    .await
    .unwrap();
    let refused = problem(
        resolve(
            &app,
            &mod_token,
            staff_report["id"].as_str().unwrap(),
            json!({"action": "suspend"}),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(error_fields(&refused), ["action"]);
    assert_eq!(app.get("/v1/me", Some(&mod_token)).await.status(), 200);
    assert_eq!(
        app.get(
            &format!("/v1/posts/{}", staff_post["id"].as_str().unwrap()),
            None
        )
        .await
        .status(),
        200
    );

    // Reinstated: they log in again and what they made (but the removed post) is back.
    problem(
        app.post_json(
            "/v1/moderation/users/nobody_here/reinstate",
            Some(&mod_token),
            json!({}),
        )
        .await,
        404,
    )
    .await;
    let back = app
        .post_json(
            "/v1/moderation/users/spammer/reinstate",
            Some(&mod_token),
            json!({}),
        )
        .await;
    assert_eq!(back.status(), StatusCode::OK);
    assert_eq!(back.json::<Value>().await.unwrap()["username"], "spammer");
    problem(
        app.post_json(
            "/v1/moderation/users/spammer/reinstate",
            Some(&mod_token),
            json!({}),
        )
        .await,
        409,
    )
    .await;
    let again = login_at(&app.base, "spammer").await;
    assert_eq!(app.get("/v1/me", Some(&again)).await.status(), 200);
    spammer_shown(&app, &victim, &other_id, &victims_id, true).await;
    problem(
        app.get(&format!("/v1/posts/{reported_id}"), None).await,
        404,
    )
    .await;

    let audit = app.get_json("/v1/moderation/audit", Some(&mod_token)).await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(&actions[..2], ["reinstate", "suspend"], "{audit}");
    assert_eq!(audit["items"][0]["target"]["username"], "spammer");
    assert_eq!(audit["items"][0]["moderator"], "warden");
    assert_eq!(audit["items"][1]["note"], "ads");
}

/// Whether the suspended-then-reinstated author of the test above is shown:
/// their post `other_id` in its page, every feed page and their listing, and
/// their two comments on `victims_id` in its count, newest two and listing.
async fn spammer_shown(app: &TestApp, victim: &str, other_id: &str, victims_id: &str, shown: bool) {
    for token in [None, Some(victim)] {
        let status = app
            .get(&format!("/v1/posts/{other_id}"), token)
            .await
            .status();
        assert_eq!(status, if shown { 200 } else { 404 });
        for limit in [1, 20] {
            let feed = app.whole_feed(token, limit).await;
            let found = feed.iter().any(|p| p["id"] == other_id);
            assert_eq!(found, shown, "limit {limit}");
        }
        let listing = app.get_json("/v1/users/spammer/posts", token).await;
        assert_eq!(page_ids(&listing).iter().any(|id| id == other_id), shown);
        let post = app
            .get_json(&format!("/v1/posts/{victims_id}"), token)
            .await;
        let comments = app
            .get_json(&format!("/v1/posts/{victims_id}/comments"), token)
            .await;
        let feed_entry = app.get_json("/v1/posts?limit=100", token).await["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == victims_id)
            .cloned()
            .unwrap();
        let (count, newest, all): (i64, &[&str], &[&str]) = if shown {
            (
                4,
                &["spam two", "by reporter"],
                &["spam two", "by reporter", "spam one", "first by victim"],
            )
        } else {
            (
                2,
                &["by reporter", "first by victim"],
                &["by reporter", "first by victim"],
            )
        };
        for seen in [&post, &feed_entry] {
            assert_eq!(seen["comment_count"], count, "{seen}");
            assert_eq!(comment_bodies(&seen["last_comments"]), newest);
        }
        assert_eq!(comment_bodies(&comments["items"]), all);
    }
}
