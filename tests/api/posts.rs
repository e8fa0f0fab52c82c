use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::helpers::{TestApp, bmp, error_fields, jpeg, png, problem};

#[tokio::test]
async fn create_post_then_it_becomes_ready() {
    let app = TestApp::spawn().await;
    let token = app.register("alice").await;
    for image in [jpeg(800, 600), png(300, 500), bmp(120, 90)] {
        let resp = app
            .upload(&token, &[("caption", "sunset")], Some(image))
            .await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let location = resp.headers()["location"].to_str().unwrap().to_owned();
        let post: Value = resp.json().await.unwrap();
        assert_eq!(
            location,
            format!("/v1/posts/{}", post["id"].as_str().unwrap())
        );
        assert_eq!(post["status"], "processing");
        assert_eq!(post["caption"], "sunset");
        assert_eq!(post["author"]["username"], "alice");
        assert_eq!(post["comment_count"], 0);
        assert!(post["image"].is_null());
        let ready = app
            .wait_for_status(&token, post["id"].as_str().unwrap(), "ready")
            .await;
        let image = &ready["image"];
        assert_eq!(
            (image["width"].as_u64(), image["height"].as_u64()),
            (Some(600), Some(600))
        );
        assert_eq!(image["content_type"], "image/jpeg");
        assert!(!image["blurhash"].as_str().unwrap().is_empty());
        let bytes = app
            .get(image["url"].as_str().unwrap(), None)
            .await
            .bytes()
            .await
            .unwrap();
        let decoded =
            image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (600, 600));
    }
}

#[tokio::test]
async fn the_original_is_kept_byte_for_byte() {
    let app = TestApp::spawn().await;
    let token = app.register("keeper").await;
    let original = png(40, 30);
    let post: Value = app
        .upload(&token, &[], Some(original.clone()))
        .await
        .json()
        .await
        .unwrap();
    let id = post["id"].as_str().unwrap();
    let stored = app.blob(&format!("originals/{id}")).await.unwrap();
    assert_eq!(stored, original);
}

#[tokio::test]
async fn processing_posts_are_visible_to_their_author_only() {
    let app = TestApp::spawn_with(|a| a.workers = Some(0)).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let post: Value = app
        .upload(&alice, &[("caption", "wip")], Some(jpeg(32, 32)))
        .await
        .json()
        .await
        .unwrap();
    let path = format!("/v1/posts/{}", post["id"].as_str().unwrap());
    assert_eq!(app.get(&path, Some(&alice)).await.status(), StatusCode::OK);
    problem(app.get(&path, Some(&bob)).await, 404).await;
    problem(app.get(&path, None).await, 404).await;
    let feed: Value = app.get_json("/v1/posts", None).await;
    assert_eq!(
        feed["items"].as_array().unwrap().len(),
        0,
        "the feed shows ready posts only"
    );
    let comment = app
        .comment(&alice, post["id"].as_str().unwrap(), "too early")
        .await;
    problem(comment, 404).await;
}

#[tokio::test]
async fn images_are_recognised_by_content_not_name() {
    let app = TestApp::spawn().await;
    let token = app.register("mallory").await;
    // A GIF and a text file, both sent as "photo.jpg" with image/jpeg.
    for junk in [
        b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec(),
        b"hello, I am text".to_vec(),
        Vec::new(),
    ] {
        problem(
            app.upload(&token, &[("caption", "x")], Some(junk)).await,
            415,
        )
        .await;
    }
    // Right magic, unreadable header.
    let mut fake_png = b"\x89PNG\r\n\x1a\n".to_vec();
    fake_png.extend_from_slice(&[0u8; 64]);
    let p = problem(app.upload(&token, &[], Some(fake_png)).await, 422).await;
    assert_eq!(p["type"], "/problems/unreadable-image");
    // Nothing was created by any of them.
    let mine: Value = app.get_json("/v1/users/mallory/posts", None).await;
    assert!(mine["items"].as_array().unwrap().is_empty());
    let staged = std::fs::read_dir(app.data_dir.join("staging"))
        .unwrap()
        .count();
    assert_eq!(staged, 0, "rejected uploads leave no staged files");
}

#[tokio::test]
async fn pixel_limit_is_checked_from_the_header() {
    let app = TestApp::spawn_with(|a| a.max_pixels = Some(10_000)).await;
    let token = app.register("big").await;
    let p = problem(app.upload(&token, &[], Some(png(200, 200))).await, 422).await;
    assert_eq!(p["type"], "/problems/image-too-large");
    assert_eq!(
        app.upload(&token, &[], Some(png(100, 100))).await.status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn images_over_100_mib_are_413() {
    let app = TestApp::spawn().await;
    let token = app.register("huge").await;
    // Declared too large: refused before the body is read.
    let resp = app
        .client
        .post(app.url("/v1/posts"))
        .bearer_auth(&token)
        .header("content-type", "multipart/form-data; boundary=x")
        .header("content-length", (200u64 << 20).to_string())
        .body(vec![0u8; 16])
        .send()
        .await;
    if let Ok(resp) = resp {
        problem(resp, 413).await;
    }
    // Streamed: one byte over the limit, without a declared length for the part.
    let mut big = jpeg(16, 16);
    big.resize((100 << 20) + 1, 0);
    let form = Form::new().part("image", Part::bytes(big).file_name("big.jpg"));
    let resp = app
        .client
        .post(app.url("/v1/posts"))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    problem(resp, 413).await;
    let mine: Value = app.get_json("/v1/users/huge/posts", None).await;
    assert!(mine["items"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn post_fields_are_validated() {
    let app = TestApp::spawn().await;
    let token = app.register("val").await;
    let long = "c".repeat(2201);
    let p = problem(
        app.upload(
            &token,
            &[("caption", &long), ("filter", "sepia"), ("expires_in", "0")],
            Some(jpeg(8, 8)),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(error_fields(&p), ["caption", "expires_in", "filter"]);
    let p = problem(
        app.upload(&token, &[("caption", "no image")], None).await,
        422,
    )
    .await;
    assert_eq!(error_fields(&p), ["image"]);
    let p = problem(
        app.upload(
            &token,
            &[("dither_levels", "17"), ("filter", "dither")],
            Some(jpeg(8, 8)),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(error_fields(&p), ["dither_levels"]);
    let ok = app
        .upload(&token, &[("caption", &"é".repeat(2200))], Some(jpeg(8, 8)))
        .await;
    assert_eq!(ok.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn creating_a_post_needs_auth_and_multipart() {
    let app = TestApp::spawn().await;
    let resp = app
        .client
        .post(app.url("/v1/posts"))
        .multipart(Form::new().text("caption", "x"))
        .send()
        .await
        .unwrap();
    problem(resp, 401).await;
    let token = app.register("json").await;
    let resp = app
        .post_json(
            "/v1/posts",
            Some(&token),
            serde_json::json!({"caption": "x"}),
        )
        .await;
    problem(resp, 422).await;
    let resp = app
        .client
        .post(app.url("/v1/posts"))
        .bearer_auth(&token)
        .body("caption=x")
        .send()
        .await
        .unwrap();
    problem(resp, 415).await;
}

#[tokio::test]
async fn filters_are_recorded_and_applied() {
    let app = TestApp::spawn().await;
    let token = app.register("artist").await;
    let post: Value = app
        .upload(
            &token,
            &[("filter", "dither"), ("dither_levels", "4")],
            Some(png(300, 300)),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(post["filter"], "dither");
    assert_eq!(post["dither_levels"], 4);
    let ready = app
        .wait_for_status(&token, post["id"].as_str().unwrap(), "ready")
        .await;
    let gray: Value = app
        .upload(&token, &[("filter", "grayscale")], Some(png(300, 300)))
        .await
        .json()
        .await
        .unwrap();
    let gray = app
        .wait_for_status(&token, gray["id"].as_str().unwrap(), "ready")
        .await;
    assert_ne!(ready["image"]["url"], gray["image"]["url"]);
    let bytes = app
        .get(gray["image"]["url"].as_str().unwrap(), None)
        .await
        .bytes()
        .await
        .unwrap();
    let decoded = image::load_from_memory(&bytes).unwrap().to_rgb8();
    let p = decoded.get_pixel(300, 300);
    assert!(
        p[0].abs_diff(p[1]) < 4 && p[1].abs_diff(p[2]) < 4,
        "grayscale pixels, got {p:?}"
    );
}

#[tokio::test]
async fn damage_found_while_decoding_fails_the_post() {
    let app = TestApp::spawn().await;
    let token = app.register("broken").await;
    let full = png(400, 400);
    let truncated = full[..full.len() / 2].to_vec();
    let resp = app
        .upload(&token, &[("caption", "half")], Some(truncated))
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED, "the header is fine");
    let post: Value = resp.json().await.unwrap();
    let failed = app
        .wait_for_status(&token, post["id"].as_str().unwrap(), "failed")
        .await;
    assert!(
        failed["failure_reason"]
            .as_str()
            .unwrap()
            .contains("decoded"),
        "{failed}"
    );
    assert!(failed["image"].is_null());
    problem(
        app.get(&format!("/v1/posts/{}", post["id"].as_str().unwrap()), None)
            .await,
        404,
    )
    .await;
}

#[tokio::test]
async fn expired_posts_disappear() {
    let app = TestApp::spawn().await;
    let token = app.register("fleeting").await;
    // Long enough to be processed first even on a loaded machine; the test then waits for expiry.
    let post: Value = app
        .upload(&token, &[("expires_in", "8")], Some(jpeg(16, 16)))
        .await
        .json()
        .await
        .unwrap();
    let id = post["id"].as_str().unwrap();
    let ready = app.wait_for_status(&token, id, "ready").await;
    let expires_at: chrono::DateTime<chrono::Utc> =
        ready["expires_at"].as_str().unwrap().parse().unwrap();
    let feed: Value = app.get_json("/v1/posts", None).await;
    assert_eq!(
        feed["items"].as_array().unwrap().len(),
        1,
        "visible until it expires"
    );
    let left = (expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(left + std::time::Duration::from_millis(50)).await;
    problem(app.get(&format!("/v1/posts/{id}"), Some(&token)).await, 404).await;
    let feed: Value = app.get_json("/v1/posts", None).await;
    assert!(feed["items"].as_array().unwrap().is_empty());
    problem(app.comment(&token, id, "late").await, 404).await;
}

#[tokio::test]
async fn only_the_author_deletes_a_post_and_everything_goes_with_it() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let post = app.ready_post(&alice, "mine").await;
    let id = post["id"].as_str().unwrap();
    app.comment(&bob, id, "nice").await;
    let path = format!("/v1/posts/{id}");
    problem(app.delete(&path, &bob).await, 403).await;
    assert_eq!(
        app.delete(&path, &alice).await.status(),
        StatusCode::NO_CONTENT
    );
    problem(app.get(&path, Some(&alice)).await, 404).await;
    problem(app.get(&format!("{path}/comments"), None).await, 404).await;
    problem(
        app.get(post["image"]["url"].as_str().unwrap(), None).await,
        404,
    )
    .await;
    assert!(
        app.blob(&format!("originals/{id}")).await.is_none(),
        "original removed"
    );
    problem(app.delete(&path, &alice).await, 404).await;
    problem(app.delete("/v1/posts/not-an-id", &alice).await, 404).await;
}

#[tokio::test]
async fn a_users_posts_newest_first_paginated() {
    let app = TestApp::spawn().await;
    let token = app.register("poster").await;
    let other = app.register("other").await;
    app.ready_post(&other, "not mine").await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(
            app.ready_post(&token, &format!("p{n}")).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    ids.reverse();
    let first: Value = app.get_json("/v1/users/POSTER/posts?limit=2", None).await;
    let got: Vec<_> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, ids[..2]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second: Value = app
        .get_json(
            &format!("/v1/users/poster/posts?limit=2&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(second["items"][0]["id"].as_str().unwrap(), ids[2]);
    assert!(second["next_cursor"].is_null());
    // A cursor belongs to its listing.
    problem(
        app.get(&format!("/v1/users/other/posts?cursor={cursor}"), None)
            .await,
        400,
    )
    .await;
    problem(app.get("/v1/users/nobody/posts", None).await, 404).await;
}

/// Alt text: given with the post (multipart here; the JSON form in
/// `uploads::a_finished_upload_becomes_a_post_exactly_once`), in every
/// representation, editable by PATCH, and checked like other text.
#[tokio::test]
async fn alt_text_is_kept_shown_everywhere_and_editable() {
    let app = TestApp::spawn().await;
    let token = app.register("describer").await;
    let alt = "A red door in a white wall, ivy above it";
    let resp = app
        .upload(
            &token,
            &[("caption", "door"), ("alt_text", alt)],
            Some(jpeg(64, 48)),
        )
        .await;
    assert_eq!(resp.status(), 202);
    let post: Value = resp.json().await.unwrap();
    assert_eq!(post["alt_text"], alt);
    let id = post["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&token, &id, "ready").await;
    let shown = |v: &Value| v["alt_text"].as_str().map(str::to_owned);
    assert_eq!(
        shown(&app.get_json(&format!("/v1/posts/{id}"), None).await).as_deref(),
        Some(alt)
    );
    let feed = app.get_json("/v1/posts", None).await;
    assert_eq!(shown(&feed["items"][0]).as_deref(), Some(alt));
    let mine = app.get_json("/v1/users/describer/posts", None).await;
    assert_eq!(shown(&mine["items"][0]).as_deref(), Some(alt));

    // A post without it has it empty.
    let plain = app.ready_post(&token, "no description").await;
    assert_eq!(plain["alt_text"], "");

    // Edited; the feed shows the new text at once (this node's cache is cleared).
    let path = format!("/v1/posts/{id}");
    let resp = app
        .client
        .patch(app.url(&path))
        .bearer_auth(&token)
        .json(&json!({"alt_text": "A red door, now open"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let edited: Value = resp.json().await.unwrap();
    assert_eq!(edited["alt_text"], "A red door, now open");
    assert_eq!(edited["caption"], "door", "the caption is left alone");
    let feed = app.get_json("/v1/posts", None).await;
    let item = feed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id.as_str())
        .unwrap();
    assert_eq!(item["alt_text"], "A red door, now open");

    // Too long, a control character, or not a string: 422 naming the field, nothing changed.
    for bad in [json!("x".repeat(1501)), json!("bell\u{7}"), json!(5)] {
        let resp = app
            .client
            .patch(app.url(&path))
            .bearer_auth(&token)
            .json(&json!({"alt_text": bad}))
            .send()
            .await
            .unwrap();
        assert_eq!(error_fields(&problem(resp, 422).await), ["alt_text"]);
    }
    let resp = app
        .upload(&token, &[("alt_text", &"y".repeat(1501))], Some(jpeg(8, 8)))
        .await;
    assert_eq!(error_fields(&problem(resp, 422).await), ["alt_text"]);
    let unchanged = app.get_json(&path, None).await;
    assert_eq!(unchanged["alt_text"], "A red door, now open");
}
