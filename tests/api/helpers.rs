use std::io::Cursor;
use std::path::PathBuf;
use std::time::Duration;

use imagegram::app::{self, Running};
use imagegram::config::ServerArgs;
use reqwest::multipart::{Form, Part};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

/// Which storage the suite runs on: `IMAGEGRAM_TEST_BACKEND=embedded` (default:
/// SQLite + local files) or `postgres-s3` (a fresh database per test on
/// `IMAGEGRAM_TEST_PG_URL`, blobs in the S3 bucket `IMAGEGRAM_TEST_BUCKET`,
/// endpoint and credentials from the `AWS_*` variables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    PostgresS3,
}

pub fn backend() -> Backend {
    match std::env::var("IMAGEGRAM_TEST_BACKEND").as_deref() {
        Ok("postgres-s3") => Backend::PostgresS3,
        Ok("embedded") | Err(_) => Backend::Embedded,
        Ok(other) => panic!("unknown IMAGEGRAM_TEST_BACKEND {other:?}"),
    }
}

/// The PostgreSQL database the suite creates and drops its test databases from.
pub fn admin_url() -> String {
    std::env::var("IMAGEGRAM_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `--database-url` and `--blob-url` for a new, empty instance on the chosen backend.
pub async fn backend_urls() -> Option<(String, String)> {
    if backend() == Backend::Embedded {
        return None;
    }
    use sqlx::Connection;
    let admin = admin_url();
    let name = format!("igtest_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .expect("PostgreSQL for the postgres-s3 suite");
    // The name is generated here from a UUID, so it is safe to splice in.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap();
    let bucket = std::env::var("IMAGEGRAM_TEST_BUCKET").unwrap_or_else(|_| "imagegram-test".into());
    Some((format!("{base}/{name}"), format!("s3://{bucket}")))
}

/// Command-line flags selecting a new, empty instance on the chosen backend
/// (none for the embedded default, which lives in the data dir).
pub async fn backend_args() -> Vec<String> {
    match backend_urls().await {
        Some((db, blobs)) => vec!["--database-url".into(), db, "--blob-url".into(), blobs],
        None => Vec::new(),
    }
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub data_dir: PathBuf,
    /// The PostgreSQL database's URL on the postgres-s3 backend.
    pub database_url: Option<String>,
    running: Option<Running>,
    /// Runs queued image jobs on demand (`drain_jobs`): a test node has no
    /// background workers unless a test asks for them.
    worker: imagegram::worker::Worker,
    background_workers: bool,
    _dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts a node on 127.0.0.1:0 after `tweak`s to its options. Image jobs
    /// run when the test drains them (`drain_jobs`, which `wait_for_status`
    /// does), unless `tweak` gives the node background workers.
    pub async fn spawn_with(tweak: impl FnOnce(&mut ServerArgs)) -> Self {
        if std::env::var_os("TEST_LOG").is_some() {
            imagegram::telemetry::init(imagegram::config::LogFormat::Text);
        }
        let dir = tempfile::tempdir().unwrap();
        let mut args = ServerArgs {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            data_dir: Some(dir.path().to_owned()),
            workers: Some(0),
            ..Default::default()
        };
        if let Some((db, blobs)) = backend_urls().await {
            args.database_url = Some(db);
            args.blob_url = Some(blobs);
        }
        let database_url = args.database_url.clone();
        tweak(&mut args);
        let config = args.resolve().unwrap();
        let background_workers = config.workers > 0;
        let running = app::serve(config.clone()).await.unwrap();
        let worker = app::worker(&running.services, &config).unwrap();
        TestApp {
            base: format!("http://{}", running.addr.unwrap()),
            client: reqwest::Client::new(),
            data_dir: dir.path().to_owned(),
            database_url,
            running: Some(running),
            worker,
            background_workers,
            _dir: dir,
        }
    }

    /// Runs image jobs until none is runnable; how many ran.
    pub async fn drain_jobs(&self) -> usize {
        let mut ran = 0;
        while self.worker.run_one().await.unwrap() {
            ran += 1;
        }
        ran
    }

    /// Runs one SQL statement on the instance's database, behind the API's back.
    pub async fn execute_sql(&self, sql: &str) {
        match &self.database_url {
            Some(url) => {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            None => {
                let conn = rusqlite::Connection::open(self.data_dir.join("imagegram.db")).unwrap();
                conn.busy_timeout(Duration::from_secs(10)).unwrap();
                conn.execute_batch(sql).unwrap();
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }

    /// Runs the expiry sweeper now instead of waiting for its period.
    pub async fn sweep(&self) -> u64 {
        self.running
            .as_ref()
            .unwrap()
            .services
            .sweep_expired()
            .await
            .unwrap()
    }

    /// The bytes an upload holds so far (its committed chunks, in order), read
    /// behind the API's back so that no request takes the upload over.
    pub async fn upload_bytes(&self, location: &str) -> Vec<u8> {
        let id: uuid::Uuid = location.rsplit('/').next().unwrap().parse().unwrap();
        let keys: Vec<String> = match &self.database_url {
            Some(url) => {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query_scalar(
                    "SELECT key FROM upload_chunks WHERE upload_id = $1 ORDER BY start",
                )
                .bind(id)
                .fetch_all(&mut conn)
                .await
                .unwrap()
            }
            None => {
                let conn = rusqlite::Connection::open(self.data_dir.join("imagegram.db")).unwrap();
                conn.prepare("SELECT key FROM upload_chunks WHERE upload_id = ?1 ORDER BY start")
                    .unwrap()
                    .query_map([id.as_bytes().as_slice()], |r| r.get(0))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap()
            }
        };
        let mut bytes = Vec::new();
        for key in keys {
            bytes.extend_from_slice(&self.blob(&key).await.expect("a committed chunk's blob"));
        }
        bytes
    }

    /// Waits until a request holds the upload's append lock (it started
    /// receiving a PATCH), as the database says.
    pub async fn wait_for_upload_lock(&self, location: &str) {
        wait_for_upload_lock(self.database_url.as_deref(), &self.data_dir, location).await
    }

    /// The node's services, for tests that drive a chore directly.
    pub fn services(&self) -> &imagegram::service::Services {
        &self.running.as_ref().unwrap().services
    }

    /// A blob of this node's store, whatever the backend.
    pub async fn blob(&self, key: &str) -> Option<bytes::Bytes> {
        self.running
            .as_ref()
            .unwrap()
            .services
            .blobs
            .get(key)
            .await
            .unwrap()
    }

    pub async fn get_json(&self, path: &str, token: Option<&str>) -> Value {
        self.get(path, token).await.json().await.unwrap()
    }

    pub async fn delete(&self, path: &str, token: &str) -> Response {
        self.client
            .delete(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Edits post `id`'s caption as `token`; the answer must be 200.
    pub async fn edit_caption(&self, token: &str, id: &str, caption: &str) {
        let resp = self
            .client
            .patch(self.url(&format!("/v1/posts/{id}")))
            .bearer_auth(token)
            .json(&json!({ "caption": caption }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "editing {id}");
    }

    pub async fn post_json(&self, path: &str, token: Option<&str>, body: Value) -> Response {
        let mut req = self.client.post(self.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }

    /// Registers `name` and returns its token.
    pub async fn register(&self, name: &str) -> String {
        let resp = self
            .post_json(
                "/v1/users",
                None,
                json!({"username": name, "password": "correct horse"}),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let body: Value = resp.json().await.unwrap();
        body["token"].as_str().unwrap().to_owned()
    }

    pub async fn upload(
        &self,
        token: &str,
        fields: &[(&str, &str)],
        image: Option<Vec<u8>>,
    ) -> Response {
        let mut form = Form::new();
        for (k, v) in fields {
            form = form.text(k.to_string(), v.to_string());
        }
        if let Some(bytes) = image {
            form = form.part(
                "image",
                Part::bytes(bytes)
                    .file_name("photo.jpg")
                    .mime_str("image/jpeg")
                    .unwrap(),
            );
        }
        self.client
            .post(self.url("/v1/posts"))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    /// Creates a post and waits until it is ready.
    pub async fn ready_post(&self, token: &str, caption: &str) -> Value {
        let resp = self
            .upload(token, &[("caption", caption)], Some(jpeg(64, 48)))
            .await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let post: Value = resp.json().await.unwrap();
        self.wait_for_status(token, post["id"].as_str().unwrap(), "ready")
            .await
    }

    /// Creates a post, waits until it is ready, and gives its id.
    pub async fn ready_post_id(&self, token: &str, caption: &str) -> String {
        self.ready_post(token, caption).await["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Every page of the feed as `token` reads it, `limit` at a time.
    pub async fn whole_feed(&self, token: Option<&str>, limit: u32) -> Vec<Value> {
        let mut posts = Vec::new();
        let mut path = format!("/v1/posts?limit={limit}");
        loop {
            let page = self.get_json(&path, token).await;
            posts.extend(page["items"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => path = format!("/v1/posts?limit={limit}&cursor={c}"),
                None => return posts,
            }
        }
    }

    /// The post once its image job has run: drained here, or, on a node with
    /// background workers, awaited.
    pub async fn wait_for_status(&self, token: &str, id: &str, status: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if !self.background_workers {
                self.drain_jobs().await;
            }
            let post: Value = self
                .get(&format!("/v1/posts/{id}"), Some(token))
                .await
                .json()
                .await
                .unwrap();
            if post["status"] == status {
                return post;
            }
            assert!(
                self.background_workers && std::time::Instant::now() < deadline,
                "post {id} is not {status}: {post}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn comment(&self, token: &str, post_id: &str, body: &str) -> Response {
        self.post_json(
            &format!("/v1/posts/{post_id}/comments"),
            Some(token),
            json!({"body": body}),
        )
        .await
    }
}

impl Drop for TestApp {
    /// Stops the node's server and workers, so tests do not pile up background
    /// work, and drops its PostgreSQL database.
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown_token().cancel();
        }
        if let Some(url) = self.database_url.take() {
            drop_database(&url);
        }
    }
}

/// Drops the test database `url` names, ending its sessions (the stopped
/// node's pool may still hold some). On a thread of its own: `Drop` cannot
/// await, and the test's runtime may be single-threaded.
fn drop_database(url: &str) {
    let (_, name) = url.rsplit_once('/').expect("a database URL");
    assert!(
        name.starts_with("igtest_"),
        "only test databases are dropped"
    );
    let name = name.to_owned();
    std::thread::spawn(move || {
        use sqlx::Connection;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url()).await {
                // The name was generated by `backend_urls` from a UUID.
                let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                let _ = sqlx::query(sqlx::AssertSqlSafe(drop))
                    .execute(&mut conn)
                    .await;
            }
        });
    })
    .join()
    .unwrap();
}

fn encode(img: image::DynamicImage, fmt: image::ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, fmt).unwrap();
    out.into_inner()
}

fn gradient(w: u32, h: u32) -> image::DynamicImage {
    image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, 128])
    }))
}

pub fn jpeg(w: u32, h: u32) -> Vec<u8> {
    encode(gradient(w, h), image::ImageFormat::Jpeg)
}

pub fn png(w: u32, h: u32) -> Vec<u8> {
    encode(gradient(w, h), image::ImageFormat::Png)
}

pub fn bmp(w: u32, h: u32) -> Vec<u8> {
    encode(gradient(w, h), image::ImageFormat::Bmp)
}

/// Checks a problem+json response and returns its body.
pub async fn problem(resp: Response, status: u16) -> Value {
    assert_eq!(resp.status().as_u16(), status, "status of {}", resp.url());
    let ctype = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(ctype, "application/problem+json");
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert_eq!(body["request_id"], request_id.as_str());
    assert!(
        body["type"].is_string() && body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    body
}

/// The `field` names of a validation problem.
/// The bodies of a JSON array of comments, in order.
pub fn comment_bodies(comments: &Value) -> Vec<String> {
    comments
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap().to_owned())
        .collect()
}

/// The ids of a page's items, in order.
pub fn page_ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect()
}

pub fn error_fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["field"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Registers `name` on the node at `base` and returns its bearer token.
pub async fn register_at(base: &str, name: &str) -> String {
    signed_in_at(base, "/v1/users", name).await
}

/// Logs `name` (registered by `register_at`) in at `base`: a new session's token.
pub async fn login_at(base: &str, name: &str) -> String {
    signed_in_at(base, "/v1/sessions", name).await
}

async fn signed_in_at(base: &str, path: &str, name: &str) -> String {
    let body: Value = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&json!({"username": name, "password": "correct horse"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["token"].as_str().expect("registered").to_owned()
}

/// A real `imagegram` process, killed (SIGKILL) when dropped.
pub struct Node {
    pub child: std::process::Child,
    /// `http://addr` for API nodes; empty for workers.
    pub base: String,
}

impl Node {
    fn spawn(
        command: &str,
        data_dir: &std::path::Path,
        backend: &[String],
        extra: &[&str],
    ) -> (std::process::Child, String) {
        use std::io::{BufRead, BufReader};
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_imagegram"));
        cmd.arg(command)
            .arg("--data-dir")
            .arg(data_dir)
            .args(backend)
            .args(extra);
        if command == "serve" {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Each process prints one line on stdout once it is up.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        (child, line.trim().to_owned())
    }

    /// An API node (`serve`).
    pub fn serve(data_dir: &std::path::Path, backend: &[String], extra: &[&str]) -> Node {
        let (child, line) = Self::spawn("serve", data_dir, backend, extra);
        let base = line
            .strip_prefix("imagegram listening on ")
            .expect("listening line")
            .to_owned();
        Node { child, base }
    }

    /// A worker-only node (`worker`).
    pub fn worker(data_dir: &std::path::Path, backend: &[String], extra: &[&str]) -> Node {
        let (child, line) = Self::spawn("worker", data_dir, backend, extra);
        assert_eq!(line, "imagegram worker started");
        Node {
            child,
            base: String::new(),
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until a request holds the upload's append lock (it started receiving
/// a PATCH), as the instance's database says (`database_url`, or the SQLite
/// file in `data_dir`).
pub async fn wait_for_upload_lock(
    database_url: Option<&str>,
    data_dir: &std::path::Path,
    location: &str,
) {
    let id: uuid::Uuid = location.rsplit('/').next().unwrap().parse().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let held = match database_url {
            Some(url) => {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query_scalar::<_, bool>(
                    "SELECT lock_token IS NOT NULL FROM uploads WHERE id = $1",
                )
                .bind(id)
                .fetch_one(&mut conn)
                .await
                .unwrap()
            }
            None => {
                let conn = rusqlite::Connection::open(data_dir.join("imagegram.db")).unwrap();
                conn.query_row(
                    "SELECT lock_token IS NOT NULL FROM uploads WHERE id = ?1",
                    [id.as_bytes().as_slice()],
                    |r| r.get(0),
                )
                .unwrap()
            }
        };
        if held {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no PATCH took the upload"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The blob store of an instance started with `backend` flags on `data_dir`.
pub fn blobs_of(
    backend: &[String],
    data_dir: &std::path::Path,
) -> std::sync::Arc<dyn imagegram::store::BlobStore> {
    let url = backend
        .iter()
        .position(|a| a == "--blob-url")
        .map(|i| backend[i + 1].clone())
        .unwrap_or_else(|| format!("file://{}/blobs", data_dir.display()));
    imagegram::app::open_blobs(&imagegram::config::parse_blob_url(&url).unwrap()).unwrap()
}

/// Text of `chars` characters, each four bytes in UTF-8: the most bytes a
/// field of that many characters holds. A post with the longest caption or
/// comments of it has a rendering far longer than a PostgreSQL index entry
/// holds (migration 0019).
pub fn widest_text(chars: usize) -> String {
    "\u{1D11E}".repeat(chars)
}
