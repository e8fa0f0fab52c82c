//! tus 1.0.0 conformance: every status code the protocol and its extensions
//! define, plus resuming after a dropped connection and consuming an upload.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use sha2::Digest;
use tokio::io::AsyncWriteExt;

use crate::helpers::{TestApp, error_fields, jpeg, problem};

const OCTETS: &str = "application/offset+octet-stream";

fn tus(app: &TestApp, method: Method, path: &str, token: &str) -> RequestBuilder {
    app.client
        .request(method, app.url(path))
        .bearer_auth(token)
        .header("tus-resumable", "1.0.0")
}

pub(crate) async fn create(app: &TestApp, token: &str, length: usize) -> String {
    let resp = tus(app, Method::POST, "/v1/uploads", token)
        .header("upload-length", length.to_string())
        .header(
            "upload-metadata",
            format!("filename {}", STANDARD.encode("photo.jpg")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(resp.headers()["tus-resumable"], "1.0.0");
    let expires = resp.headers()["upload-expires"].to_str().unwrap();
    httpdate::parse_http_date(expires).expect("Upload-Expires is an HTTP date");
    resp.headers()["location"].to_str().unwrap().to_owned()
}

pub(crate) async fn patch(
    app: &TestApp,
    token: &str,
    location: &str,
    offset: usize,
    bytes: &[u8],
) -> Response {
    tus(app, Method::PATCH, location, token)
        .header("content-type", OCTETS)
        .header("upload-offset", offset.to_string())
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap()
}

async fn offset(app: &TestApp, token: &str, location: &str) -> u64 {
    let resp = tus(app, Method::HEAD, location, token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    resp.headers()["upload-offset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn options_advertises_the_server() {
    let app = TestApp::spawn().await;
    let resp = app
        .client
        .request(Method::OPTIONS, app.url("/v1/uploads"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let h = resp.headers();
    assert_eq!(h["tus-version"], "1.0.0");
    assert_eq!(h["tus-max-size"], "104857600");
    let extensions = h["tus-extension"].to_str().unwrap();
    for e in [
        "creation",
        "creation-with-upload",
        "termination",
        "expiration",
        "checksum",
    ] {
        assert!(extensions.split(',').any(|x| x == e), "{e} in {extensions}");
    }
    assert!(
        h["tus-checksum-algorithm"]
            .to_str()
            .unwrap()
            .contains("sha1")
    );
}

#[tokio::test]
async fn creation_rules() {
    let app = TestApp::spawn().await;
    let token = app.register("uploader").await;
    // Wrong or missing protocol version: 412 with the versions we speak.
    for version in [None, Some("0.2.2")] {
        let mut req = app
            .client
            .post(app.url("/v1/uploads"))
            .bearer_auth(&token)
            .header("upload-length", "10");
        if let Some(v) = version {
            req = req.header("tus-resumable", v);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.headers()["tus-version"], "1.0.0");
        problem(resp, 412).await;
    }
    let anonymous = app
        .client
        .post(app.url("/v1/uploads"))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "10");
    problem(anonymous.send().await.unwrap(), 401).await;
    problem(
        tus(&app, Method::POST, "/v1/uploads", &token)
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    let too_big =
        tus(&app, Method::POST, "/v1/uploads", &token).header("upload-length", "104857601");
    problem(too_big.send().await.unwrap(), 413).await;
    let bad_meta = tus(&app, Method::POST, "/v1/uploads", &token)
        .header("upload-length", "10")
        .header("upload-metadata", "filename ***");
    assert_eq!(
        error_fields(&problem(bad_meta.send().await.unwrap(), 422).await),
        ["Upload-Metadata"]
    );
    let location = create(&app, &token, 10).await;
    let head = tus(&app, Method::HEAD, &location, &token)
        .send()
        .await
        .unwrap();
    assert_eq!(head.headers()["upload-offset"], "0");
    assert_eq!(head.headers()["upload-length"], "10");
    assert_eq!(
        head.headers()["upload-metadata"],
        format!("filename {}", STANDARD.encode("photo.jpg")).as_str()
    );
}

#[tokio::test]
async fn patch_rules() {
    let app = TestApp::spawn().await;
    let token = app.register("patcher").await;
    let location = create(&app, &token, 10).await;
    let wrong_type = tus(&app, Method::PATCH, &location, &token)
        .header("content-type", "application/octet-stream")
        .header("upload-offset", "0")
        .body("abc");
    problem(wrong_type.send().await.unwrap(), 415).await;
    let no_offset = tus(&app, Method::PATCH, &location, &token)
        .header("content-type", OCTETS)
        .body("abc");
    problem(no_offset.send().await.unwrap(), 400).await;
    // Offset mismatch: 409 and nothing written.
    problem(patch(&app, &token, &location, 3, b"abc").await, 409).await;
    assert_eq!(offset(&app, &token, &location).await, 0);
    let ok = patch(&app, &token, &location, 0, b"abcd").await;
    assert_eq!(ok.status(), StatusCode::NO_CONTENT);
    assert_eq!(ok.headers()["upload-offset"], "4");
    assert!(ok.headers().contains_key("upload-expires"));
    // Past Upload-Length: 413 and nothing written.
    problem(patch(&app, &token, &location, 4, b"0123456789").await, 413).await;
    assert_eq!(offset(&app, &token, &location).await, 4);
    // An empty PATCH is fine and changes nothing.
    assert_eq!(
        patch(&app, &token, &location, 4, b"").await.headers()["upload-offset"],
        "4"
    );
}

#[tokio::test]
async fn checksums_are_verified_and_bad_chunks_discarded() {
    let app = TestApp::spawn().await;
    let token = app.register("checker").await;
    let location = create(&app, &token, 8).await;
    let with = |algorithm: &str, digest: Vec<u8>, offset: usize, body: &'static [u8]| {
        tus(&app, Method::PATCH, &location, &token)
            .header("content-type", OCTETS)
            .header("upload-offset", offset.to_string())
            .header(
                "upload-checksum",
                format!("{algorithm} {}", STANDARD.encode(digest)),
            )
            .body(body)
    };
    let sha1 = |b: &[u8]| sha1::Sha1::digest(b).to_vec();
    let sha256 = |b: &[u8]| sha2::Sha256::digest(b).to_vec();
    let resp = with("sha1", sha1(b"wxyz"), 0, b"abcd")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 460);
    assert_eq!(
        offset(&app, &token, &location).await,
        0,
        "the bad chunk was discarded"
    );
    let resp = with("sha1", sha1(b"abcd"), 0, b"abcd")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = with("sha256", sha256(b"efgh"), 4, b"efgh")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(resp.headers()["upload-offset"], "8");
    problem(with("md5", vec![0; 16], 8, b"").send().await.unwrap(), 400).await;
}

#[tokio::test]
async fn creation_with_upload_termination_and_method_override() {
    let app = TestApp::spawn().await;
    let token = app.register("oneshot").await;
    let resp = tus(&app, Method::POST, "/v1/uploads", &token)
        .header("upload-length", "6")
        .header("content-type", OCTETS)
        .body("abc")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(resp.headers()["upload-offset"], "3");
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    // PATCH through POST + X-HTTP-Method-Override.
    let resp = tus(&app, Method::POST, &location, &token)
        .header("x-http-method-override", "PATCH")
        .header("content-type", OCTETS)
        .header("upload-offset", "3")
        .body("def")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(resp.headers()["upload-offset"], "6");
    let resp = tus(&app, Method::POST, &location, &token)
        .header("x-http-method-override", "DELETE")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    problem(
        tus(&app, Method::PATCH, &location, &token)
            .header("content-type", OCTETS)
            .header("upload-offset", "6")
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    let head = tus(&app, Method::HEAD, &location, &token)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn only_the_uploader_can_touch_an_upload() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let other = app.register("intruder").await;
    let location = create(&app, &owner, 4).await;
    assert_eq!(
        tus(&app, Method::HEAD, &location, &other)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    problem(patch(&app, &other, &location, 0, b"evil").await, 404).await;
    problem(
        tus(&app, Method::DELETE, &location, &other)
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    assert_eq!(offset(&app, &owner, &location).await, 0);
    let upload_id = location.rsplit('/').next().unwrap();
    patch(&app, &owner, &location, 0, b"abcd").await;
    let resp = app
        .post_json("/v1/posts", Some(&other), json!({"upload_id": upload_id}))
        .await;
    assert_eq!(error_fields(&problem(resp, 422).await), ["upload_id"]);
}

#[tokio::test]
async fn a_finished_upload_becomes_a_post_exactly_once() {
    let app = TestApp::spawn().await;
    let token = app.register("resumer").await;
    let image = jpeg(640, 480);
    let location = create(&app, &token, image.len()).await;
    let upload_id = location.rsplit('/').next().unwrap().to_owned();
    let third = image.len() / 3;
    // Unfinished: not yet usable.
    patch(&app, &token, &location, 0, &image[..third]).await;
    let resp = app
        .post_json(
            "/v1/posts",
            Some(&token),
            json!({"upload_id": upload_id, "caption": "x"}),
        )
        .await;
    problem(resp, 422).await;
    patch(&app, &token, &location, third, &image[third..2 * third]).await;
    patch(&app, &token, &location, 2 * third, &image[2 * third..]).await;
    let resp = app
        .post_json(
            "/v1/posts",
            Some(&token),
            json!({"upload_id": upload_id, "caption": "resumed", "filter": "grayscale",
                   "alt_text": "A grey harbour at dawn"}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let post: Value = resp.json().await.unwrap();
    assert_eq!(post["caption"], "resumed");
    assert_eq!(post["alt_text"], "A grey harbour at dawn");
    assert_eq!(post["filter"], "grayscale");
    let id = post["id"].as_str().unwrap();
    app.wait_for_status(&token, id, "ready").await;
    assert_eq!(app.blob(&format!("originals/{id}")).await.unwrap(), image);
    // Consumed: a second post from it fails, and the upload is gone.
    let again = app
        .post_json("/v1/posts", Some(&token), json!({"upload_id": upload_id}))
        .await;
    problem(again, 422).await;
    assert_eq!(
        tus(&app, Method::HEAD, &location, &token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
}

/// The connection drops mid-PATCH: what arrived is kept, and the upload resumes from there.
#[tokio::test]
async fn bytes_received_before_a_dropped_connection_are_kept() {
    let app = TestApp::spawn().await;
    let token = app.register("flaky").await;
    let image = jpeg(800, 600);
    let location = create(&app, &token, image.len()).await;
    let half = image.len() / 2;
    let addr = app.base.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nTus-Resumable: 1.0.0\r\n\
         Content-Type: {OCTETS}\r\nUpload-Offset: 0\r\nContent-Length: {}\r\n\r\n",
        image.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&image[..half]).await.unwrap();
    conn.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(conn); // the phone went into a tunnel
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let kept = loop {
        let o = offset(&app, &token, &location).await;
        if o > 0 || std::time::Instant::now() > deadline {
            break o;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(kept as usize, half, "everything that arrived was kept");
    let resp = patch(&app, &token, &location, half, &image[half..]).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let upload_id = location.rsplit('/').next().unwrap();
    let post: Value = app
        .post_json("/v1/posts", Some(&token), json!({"upload_id": upload_id}))
        .await
        .json()
        .await
        .unwrap();
    let id = post["id"].as_str().unwrap();
    assert_eq!(app.blob(&format!("originals/{id}")).await.unwrap(), image);
}

/// Two PATCHes at the same offset at once: the later takes the upload over
/// (the earlier commits what it received and stops), then finds the offset
/// moved and gets 409. Nothing is corrupted: the upload holds one writer's
/// bytes, each once, and resumes from the offset it reports.
#[tokio::test]
async fn concurrent_patches_cannot_corrupt_an_upload() {
    let app = TestApp::spawn().await;
    let token = app.register("racer").await;
    let size = 2 << 20;
    let location = create(&app, &token, size).await;
    let (a, b) = (vec![b'a'; size], vec![b'b'; size]);
    let (ra, rb) = tokio::join!(
        patch(&app, &token, &location, 0, &a),
        patch(&app, &token, &location, 0, &b)
    );
    let mut statuses = [ra.status().as_u16(), rb.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [204, 409]);
    let reached = offset(&app, &token, &location).await as usize;
    let held = app.upload_bytes(&location).await;
    assert_eq!(held.len(), reached);
    assert!(
        held.iter().all(|&c| c == b'a') || held.iter().all(|&c| c == b'b'),
        "one writer's bytes only"
    );
    let rest = vec![held.first().copied().unwrap_or(b'a'); size - reached];
    let resp = patch(&app, &token, &location, reached, &rest).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(offset(&app, &token, &location).await as usize, size);
}

#[tokio::test]
async fn unfinished_uploads_expire_and_are_swept() {
    let app = TestApp::spawn_with(|a| a.upload_expiry_secs = Some(1)).await;
    let token = app.register("slowpoke").await;
    let location = create(&app, &token, 10).await;
    patch(&app, &token, &location, 0, b"abc").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let head = tus(&app, Method::HEAD, &location, &token)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::GONE);
    problem(patch(&app, &token, &location, 3, b"def").await, 410).await;
    assert!(app.sweep().await >= 1);
    assert_eq!(
        tus(&app, Method::HEAD, &location, &token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
}
