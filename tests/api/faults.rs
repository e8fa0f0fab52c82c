//! The faults the real world makes, through the fault proxy against a real
//! server: a connection that goes silent mid-body (no FIN, no RST: a phone that
//! lost coverage), a client that vanishes right after sending its request, a
//! body that stops arriving, and a node that freezes while holding an upload.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fault_proxy::{FaultProxy, Faults};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Node, TestApp, backend_args, blobs_of, register_at, wait_for_upload_lock};

fn addr_of(base: &str) -> SocketAddr {
    base.trim_start_matches("http://").parse().unwrap()
}

/// Random bytes that no codec or compression shortens.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Sends `head` and `body` on a new connection to `to` and reads until the
/// connection ends (the proxy resets it, or the server answers and closes).
async fn send_raw(to: SocketAddr, head: String, body: Vec<u8>) {
    let mut conn = TcpStream::connect(to).await.unwrap();
    let _ = conn.write_all(head.as_bytes()).await;
    let _ = conn.write_all(&body).await;
    let mut sink = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(30), conn.read(&mut sink)).await
    {
        if n == 0 {
            break;
        }
    }
}

fn patch_head(location: &str, token: &str, offset: u64, length: usize) -> String {
    format!(
        "PATCH {location} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Tus-Resumable: 1.0.0\r\nUpload-Offset: {offset}\r\n\
         Content-Type: application/offset+octet-stream\r\nContent-Length: {length}\r\n\r\n"
    )
}

async fn create_upload(client: &reqwest::Client, base: &str, token: &str, length: usize) -> String {
    let created = client
        .post(format!("{base}/v1/uploads"))
        .bearer_auth(token)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", length.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    created.headers()["location"].to_str().unwrap().to_owned()
}

/// HEAD on an upload: (status, offset, how long the answer took).
async fn head(
    client: &reqwest::Client,
    base: &str,
    location: &str,
    token: &str,
) -> (u16, u64, Duration) {
    let started = Instant::now();
    let resp = client
        .head(format!("{base}{location}"))
        .bearer_auth(token)
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    let offset = resp
        .headers()
        .get("upload-offset")
        .map(|v| v.to_str().unwrap().parse().unwrap())
        .unwrap_or(0);
    (resp.status().as_u16(), offset, started.elapsed())
}

async fn patch(
    client: &reqwest::Client,
    base: &str,
    location: &str,
    token: &str,
    offset: u64,
    bytes: Vec<u8>,
) -> reqwest::Response {
    client
        .patch(format!("{base}{location}"))
        .bearer_auth(token)
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", offset.to_string())
        .header("content-type", "application/offset+octet-stream")
        .body(bytes)
        .send()
        .await
        .unwrap()
}

/// The upload's bytes, as a post created from it stores them.
async fn original_of(app: &TestApp, token: &str, upload_location: &str) -> bytes::Bytes {
    let upload_id = upload_location.rsplit('/').next().unwrap();
    let resp = app
        .post_json(
            "/v1/posts",
            Some(token),
            json!({"upload_id": upload_id, "caption": "from a broken link"}),
        )
        .await;
    assert!(resp.status().is_success(), "{}", resp.status());
    let post: Value = resp.json().await.unwrap();
    app.blob(&format!("originals/{}", post["id"].as_str().unwrap()))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_silently_dropped_patch_gives_its_upload_back_at_once_with_every_byte_that_arrived() {
    // The idle timeout is far away: the takeover must not wait for it.
    let app = TestApp::spawn_with(|a| a.idle_timeout_secs = Some(120)).await;
    let token = app.register("silent_phone").await;
    let image = crate::tus_clients::noisy_png(900, 700);
    let location = create_upload(&app.client, &app.base, &token, image.len()).await;
    let head_bytes = patch_head(&location, &token, 0, image.len());
    let arrived = 700_000;
    let proxy = FaultProxy::start(
        addr_of(&app.base),
        Faults {
            silent_drop_after: Some((head_bytes.len() + arrived) as u64),
            ..Faults::default()
        },
    )
    .await
    .unwrap();
    send_raw(proxy.addr(), head_bytes, image.clone()).await;
    assert_eq!(proxy.silent_drops(), 1, "the link went quiet mid-body");
    app.wait_for_upload_lock(&location).await;

    // The client's next request finds every byte that reached the server, at once.
    let (status, offset, took) = head(&app.client, &app.base, &location, &token).await;
    assert_eq!(status, 200);
    assert_eq!(offset, arrived as u64, "bytes that arrived are kept");
    assert!(took < Duration::from_secs(2), "the takeover took {took:?}");
    let resp = patch(
        &app.client,
        &app.base,
        &location,
        &token,
        offset,
        image[offset as usize..].to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 204, "the resumed PATCH is not blocked");
    assert_eq!(
        Sha256::digest(original_of(&app, &token, &location).await),
        Sha256::digest(&image)
    );
}

#[tokio::test]
async fn a_running_patch_commits_as_it_goes() {
    let app = TestApp::spawn().await;
    let token = app.register("steady_phone").await;
    let body = noise(6 << 20, 7);
    let location = create_upload(&app.client, &app.base, &token, body.len()).await;
    // 192 KiB/s: the PATCH runs for 32 s; the stored offset must grow meanwhile.
    let proxy = FaultProxy::start(
        addr_of(&app.base),
        Faults {
            upload_bytes_per_sec: Some(192 * 1024),
            max_piece: Some(16 * 1024),
            ..Faults::default()
        },
    )
    .await
    .unwrap();
    let sending = tokio::spawn(send_raw(
        proxy.addr(),
        patch_head(&location, &token, 0, body.len()),
        body.clone(),
    ));
    // Reads the committed offset straight from the database, so the running
    // PATCH is not asked to let go (a HEAD would take the upload over).
    // Sampled once the PATCH has reached the server and made its first
    // commit (on a loaded machine, accepting and authenticating it, and the
    // first commit, may take seconds).
    app.wait_for_upload_lock(&location).await;
    let first_commit = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut seen = vec![app.upload_bytes(&location).await.len()];
    while seen[0] == 0 && tokio::time::Instant::now() < first_commit {
        tokio::time::sleep(Duration::from_millis(200)).await;
        seen[0] = app.upload_bytes(&location).await.len();
    }
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        seen.push(app.upload_bytes(&location).await.len());
    }
    // Commits come every second or MiB; 3 s between samples leaves room for a
    // loaded machine.
    assert!(
        seen.windows(2).all(|w| w[1] > w[0]) && seen[0] > 0,
        "the offset advanced every 3 s of a running PATCH: {seen:?}"
    );
    drop(sending);
}

/// A node that freezes (SIGSTOP) while a PATCH streams into it: the client
/// resumes on another node within about a second, and when the frozen node
/// wakes up its request is fenced: it cannot write into the upload again.
#[tokio::test]
async fn another_node_takes_over_from_a_frozen_one_and_the_stale_request_is_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend_args().await;
    let frozen = Node::serve(dir.path(), &backend, &["--workers", "0"]);
    let other = Node::serve(dir.path(), &backend, &["--workers", "1"]);
    let client = reqwest::Client::new();
    let token = register_at(&other.base, "two_towers").await;
    let body = crate::tus_clients::noisy_png(1000, 700);
    let location = create_upload(&client, &other.base, &token, body.len()).await;
    let head_bytes = patch_head(&location, &token, 0, body.len());
    let proxy = FaultProxy::start(
        addr_of(&frozen.base),
        Faults {
            silent_drop_after: Some((head_bytes.len() + 1_200_000) as u64),
            upload_bytes_per_sec: Some(4 << 20),
            ..Faults::default()
        },
    )
    .await
    .unwrap();
    send_raw(proxy.addr(), head_bytes, body.clone()).await;
    let database_url = backend
        .iter()
        .position(|a| a == "--database-url")
        .map(|i| backend[i + 1].clone());
    wait_for_upload_lock(database_url.as_deref(), dir.path(), &location).await;
    let pid = frozen.child.id().to_string();
    let signal = |sig: &str| {
        let status = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap();
        assert!(status.success());
    };
    signal("-STOP");
    let (status, offset, took) = head(&client, &other.base, &location, &token).await;
    assert_eq!(status, 200);
    assert!(
        took < Duration::from_secs(2),
        "a frozen holder was taken over in {took:?}"
    );
    assert!(offset <= 1_200_000, "{offset}");
    let resp = patch(
        &client,
        &other.base,
        &location,
        &token,
        offset,
        body[offset as usize..].to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 204);
    // The frozen request wakes up holding bytes it never committed: it must
    // not write them anywhere.
    signal("-CONT");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, offset, _) = head(&client, &other.base, &location, &token).await;
    assert_eq!(offset, body.len() as u64);
    // The upload's bytes are exact, each once: the post made from it keeps them.
    let upload_id = location.rsplit('/').next().unwrap();
    let post: Value = client
        .post(format!("{}/v1/posts", other.base))
        .bearer_auth(&token)
        .json(&json!({"upload_id": upload_id}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let blobs = blobs_of(&backend, dir.path());
    let stored = blobs
        .get(&format!("originals/{}", post["id"].as_str().unwrap()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(Sha256::digest(&stored), Sha256::digest(&body));
}

#[tokio::test]
async fn an_idempotent_retry_after_the_client_vanished_gets_the_original_answer() {
    let app = TestApp::spawn().await;
    let token = app.register("vanisher").await;
    let author = app.register("poster").await;
    let post = app.ready_post(&author, "talk to me").await;
    let post_id = post["id"].as_str().unwrap();
    let body = json!({"body": "sent from a tunnel"}).to_string();
    let head_bytes = format!(
        "POST /v1/posts/{post_id}/comments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Idempotency-Key: \"tunnel-1\"\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let proxy = FaultProxy::start(
        addr_of(&app.base),
        Faults {
            vanish_after: Some((head_bytes.len() + body.len()) as u64),
            ..Faults::default()
        },
    )
    .await
    .unwrap();
    send_raw(proxy.addr(), head_bytes, body.into_bytes()).await;
    assert_eq!(proxy.resets(), 1, "the client vanished");

    // The request runs to its end without its client. (Waiting for it keeps a
    // retry from overtaking it, which would simply make the retry the original.)
    let started = Instant::now();
    let comments = format!("/v1/posts/{post_id}/comments");
    while app.get_json(&comments, None).await["items"]
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the write never happened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The retry gets the original answer (a 409 while the first still runs
    // would say when to come back), within a second of the vanishing.
    let replayed = loop {
        let resp = app
            .client
            .post(app.url(&comments))
            .bearer_auth(&token)
            .header("idempotency-key", "\"tunnel-1\"")
            .json(&json!({"body": "sent from a tunnel"}))
            .send()
            .await
            .unwrap();
        if resp.status() != 409 {
            break resp;
        }
        assert!(started.elapsed() < Duration::from_secs(1), "still 409");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(replayed.status(), 201);
    assert_eq!(
        replayed
            .headers()
            .get("idempotent-replayed")
            .map(|v| v.as_bytes()),
        Some(&b"true"[..]),
        "{:?}",
        replayed.headers()
    );
    let replayed: Value = replayed.json().await.unwrap();
    let listed = app
        .get_json(&format!("/v1/posts/{post_id}/comments"), None)
        .await;
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "the comment was made once: {listed}");
    assert_eq!(items[0]["id"], replayed["id"]);
}

fn multipart_post(token: &str, image: &[u8]) -> (String, Vec<u8>) {
    let boundary = "imagegram-fault-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"caption\"\r\n\r\nthrough a bad link\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\
         Content-Type: image/png\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(image);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let head = format!(
        "POST /v1/posts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    (head, body)
}

/// Posts of `user` in their listing (ready ones).
async fn post_count(app: &TestApp, user: &str) -> usize {
    app.get_json(&format!("/v1/users/{user}/posts"), None).await["items"]
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test]
async fn a_multipart_post_whose_link_freezes_is_cut_and_changes_nothing() {
    let app = TestApp::spawn_with(|a| a.idle_timeout_secs = Some(1)).await;
    let token = app.register("frozen_link").await;
    let image = crate::tus_clients::noisy_png(400, 300);
    let (head, body) = multipart_post(&token, &image);
    let proxy = FaultProxy::start(
        addr_of(&app.base),
        Faults {
            freeze_after: Some((head.len() + body.len() / 2) as u64),
            ..Faults::default()
        },
    )
    .await
    .unwrap();
    let sending = tokio::spawn(send_raw(proxy.addr(), head, body));
    // The server cuts the silent body after its idle timeout; nothing was made.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(post_count(&app, "frozen_link").await, 0);
    let staged = std::fs::read_dir(app.data_dir.join("staging"))
        .unwrap()
        .count();
    assert_eq!(staged, 0, "the half-received image was not left in staging");
    sending.abort();
    // The same post through a link that only drips arrives whole.
    let (head, body) = multipart_post(&token, &image);
    let drip = FaultProxy::start(
        addr_of(&app.base),
        Faults {
            upload_bytes_per_sec: Some(512 * 1024),
            max_piece: Some(4096),
            ..Faults::default()
        },
    )
    .await
    .unwrap();
    let mut conn = TcpStream::connect(drip.addr()).await.unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body).await.unwrap();
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(30), conn.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
}

/// Sends `method path` with a JSON `body` and `token` through a fault proxy
/// whose client vanishes the moment the whole request is sent.
async fn vanish(app: &TestApp, token: &str, method: &str, path: &str, body: serde_json::Value) {
    let body = body.to_string();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let proxy = FaultProxy::start(
        addr_of(&app.base),
        Faults {
            vanish_after: Some((head.len() + body.len()) as u64),
            ..Faults::default()
        },
    )
    .await
    .unwrap();
    send_raw(proxy.addr(), head, body.into_bytes()).await;
    assert_eq!(proxy.resets(), 1, "the client vanished");
}

/// Waits (bounded) until `done` holds: a write whose client vanished is
/// finished by the server on its own time.
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut done: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A report, a block and a moderator's suspension whose client vanishes the
/// moment the request is sent still happen, once each.
#[tokio::test]
async fn safety_writes_finish_when_their_client_vanishes() {
    let app = TestApp::spawn_with(|a| a.session_cache_ms = Some(0)).await;
    let author = app.register("loud_author").await;
    let reporter = app.register("quiet_reader").await;
    let warden = app.register("warden").await;
    app.services()
        .set_role(&imagegram::service::Actor::Operator, "warden", "moderator")
        .await
        .unwrap();
    let post = app.ready_post_id(&author, "a loud post").await;

    let report = json!({"target": {"type": "post", "id": post}, "reason": "spam"});
    vanish(&app, &reporter, "POST", "/v1/reports", report).await;
    let queue = || async {
        app.get_json("/v1/moderation/reports", Some(&warden)).await["items"]
            .as_array()
            .unwrap()
            .clone()
    };
    eventually("the report was never filed", || async {
        queue().await.len() == 1
    })
    .await;
    let group = queue().await[0].clone();
    assert_eq!(group["report_count"], 1);

    vanish(
        &app,
        &reporter,
        "PUT",
        "/v1/me/blocks/loud_author",
        json!({}),
    )
    .await;
    eventually("the block never happened", || async {
        app.get_json("/v1/me/blocks", Some(&reporter)).await["items"]
            .to_string()
            .contains("loud_author")
    })
    .await;

    let path = format!(
        "/v1/moderation/reports/{}/resolve",
        group["id"].as_str().unwrap()
    );
    vanish(&app, &warden, "POST", &path, json!({"action": "suspend"})).await;
    eventually("the suspension never happened", || async {
        app.get("/v1/me", Some(&author)).await.status() == 401
    })
    .await;
    let login = app
        .post_json(
            "/v1/sessions",
            None,
            json!({"username": "loud_author", "password": "correct horse"}),
        )
        .await;
    assert_eq!(login.status(), 403);
    let audit = app.get_json("/v1/moderation/audit", Some(&warden)).await;
    let suspensions = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "suspend")
        .count();
    assert_eq!(suspensions, 1, "once: {audit}");
}

/// A password change and an account deletion whose client vanishes the
/// moment the request is sent still happen: the write is not the client's to
/// cancel.
#[tokio::test]
async fn account_writes_finish_when_their_client_vanishes() {
    let app = TestApp::spawn_with(|a| a.session_cache_ms = Some(0)).await;
    let token = app.register("tunnel_user").await;
    let vanishing = |method: &'static str, path: &'static str, body: serde_json::Value| {
        vanish(&app, &token, method, path, body)
    };
    let login = |password: &'static str| {
        app.post_json(
            "/v1/sessions",
            None,
            json!({"username": "tunnel_user", "password": password}),
        )
    };
    // The waits are bounded (see `eventually`): the requests hash a password
    // (Argon2) after their client left.

    vanishing(
        "PUT",
        "/v1/me/password",
        json!({"current_password": "correct horse", "new_password": "changed in a tunnel"}),
    )
    .await;
    eventually("the password change never happened", || async {
        login("changed in a tunnel").await.status() == 201
    })
    .await;

    vanishing(
        "DELETE",
        "/v1/me",
        json!({"password": "changed in a tunnel"}),
    )
    .await;
    eventually("the deletion never happened", || async {
        app.get("/v1/me", Some(&token)).await.status() == 401
    })
    .await;
    assert_eq!(login("changed in a tunnel").await.status(), 401);
    app.register("tunnel_user").await;
}

/// Comment deletions whose clients vanish the moment their requests are sent,
/// two at once (so they can share a batch): each is done exactly once, and
/// the post's count and newest two are as if the clients had stayed.
#[tokio::test]
async fn comment_deletions_finish_once_when_their_clients_vanish() {
    let app = TestApp::spawn().await;
    let author = app.register("post_author").await;
    let commenter = app.register("rueful").await;
    let post = app.ready_post_id(&author, "a post").await;
    let mut ids = Vec::new();
    for n in 0..4 {
        let c: serde_json::Value = app
            .comment(&commenter, &post, &format!("c{n}"))
            .await
            .json()
            .await
            .unwrap();
        ids.push(c["id"].as_str().unwrap().to_owned());
    }
    let path = |id: &str| format!("/v1/posts/{post}/comments/{id}");
    // The newest, which the post shows, and the oldest, which it does not.
    let (newest, oldest) = (path(&ids[3]), path(&ids[0]));
    tokio::join!(
        vanish(&app, &commenter, "DELETE", &newest, json!({})),
        vanish(&app, &commenter, "DELETE", &oldest, json!({})),
    );
    let shown = || async {
        let p = app.get_json(&format!("/v1/posts/{post}"), None).await;
        let last: Vec<String> = p["last_comments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["body"].as_str().unwrap().to_owned())
            .collect();
        (p["comment_count"].as_i64().unwrap(), last)
    };
    eventually("the deletions never happened", || async {
        shown().await.0 == 2
    })
    .await;
    assert_eq!(shown().await, (2, vec!["c2".to_owned(), "c1".to_owned()]));
    let listed = app
        .get_json(&format!("/v1/posts/{post}/comments"), None)
        .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 2, "{listed}");
    // Done once: deleting again finds nothing, and changes nothing.
    for id in [&ids[3], &ids[0]] {
        assert_eq!(app.delete(&path(id), &commenter).await.status(), 404);
    }
    assert_eq!(shown().await, (2, vec!["c2".to_owned(), "c1".to_owned()]));
}

/// How a blocker's readers leave, in the tests below.
#[derive(Clone, Copy)]
enum Leaving {
    /// Coverage lost right after asking: no FIN, no RST, nothing read.
    Silent,
    /// Gone the moment the request is sent: the server's side is closed.
    Vanished,
}

/// Readers who block someone and leave right after asking for a page (the
/// first, made from the cached posts and kept per hiding; or one deep in the
/// feed, read with the comments that replace the hidden ones): their pages
/// hold nothing the next reader needs. More of them than the embedded
/// database has reader threads, all at once; then a reader's page is exact
/// and a write lands, and the same page shows it.
async fn a_blockers_page_outlives_readers_who_leave(deep: bool, leaving: Leaving) {
    let app = TestApp::spawn().await;
    let reader = app.register("leaving_blocker").await;
    let hidden = app.register("hidden_one").await;
    let writer = app.register("still_writes").await;
    let mut posts = Vec::new();
    for n in 0..3 {
        let post = app.ready_post_id(&writer, &format!("post {n}")).await;
        // Each shows the hidden user among its newest; ranked 3, 2, 1.
        for m in 0..=n {
            let by = if m == n { &hidden } else { &writer };
            assert_eq!(
                app.comment(by, &post, &format!("c{n}.{m}")).await.status(),
                201
            );
        }
        posts.push(post);
    }
    let block = crate::blocks::put_block(&app, &reader, "hidden_one").await;
    assert_eq!(block.status(), 204);
    let first = app.get_json("/v1/posts?limit=1", Some(&reader)).await;
    let (path, post, shown) = if deep {
        let path = format!(
            "/v1/posts?limit=1&cursor={}",
            first["next_cursor"].as_str().unwrap()
        );
        (path, &posts[1], vec!["c1.0"])
    } else {
        (
            "/v1/posts?limit=1".to_owned(),
            &posts[2],
            vec!["c2.1", "c2.0"],
        )
    };
    let expected = app.get_json(&path, Some(&reader)).await;
    assert_eq!(
        crate::helpers::comment_bodies(&expected["items"][0]["last_comments"]),
        shown,
        "the page shows only what is not hidden"
    );

    let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {reader}\r\n\r\n");
    let sent = Some(head.len() as u64);
    let faults = match leaving {
        Leaving::Silent => Faults {
            silent_drop_after: sent,
            ..Faults::default()
        },
        Leaving::Vanished => Faults {
            vanish_after: sent,
            ..Faults::default()
        },
    };
    let proxy = FaultProxy::start(addr_of(&app.base), faults).await.unwrap();
    const LEAVING: usize = 12;
    futures_util::future::join_all(
        (0..LEAVING).map(|_| send_raw(proxy.addr(), head.clone(), Vec::new())),
    )
    .await;
    let left = match leaving {
        Leaving::Silent => proxy.silent_drops(),
        Leaving::Vanished => proxy.resets(),
    };
    assert_eq!(left, LEAVING as u64, "every reader left");

    // Silent readers' connections are still open and unread; others go on.
    assert_eq!(app.get_json(&path, Some(&reader)).await, expected);
    assert_eq!(app.comment(&writer, post, "after").await.status(), 201);
    let again = app.get_json(&path, Some(&reader)).await;
    assert_eq!(
        crate::helpers::comment_bodies(&again["items"][0]["last_comments"]),
        [&["after"], &shown[..1]].concat()
    );
    drop(proxy);
}

#[tokio::test]
async fn a_blockers_deep_pages_hold_nothing_when_their_readers_go_silent() {
    a_blockers_page_outlives_readers_who_leave(true, Leaving::Silent).await;
}

#[tokio::test]
async fn a_blockers_deep_pages_hold_nothing_when_their_readers_vanish() {
    a_blockers_page_outlives_readers_who_leave(true, Leaving::Vanished).await;
}

#[tokio::test]
async fn a_blockers_first_pages_hold_nothing_when_their_readers_go_silent() {
    a_blockers_page_outlives_readers_who_leave(false, Leaving::Silent).await;
}

#[tokio::test]
async fn a_blockers_first_pages_hold_nothing_when_their_readers_vanish() {
    a_blockers_page_outlives_readers_who_leave(false, Leaving::Vanished).await;
}
