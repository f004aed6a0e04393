//! Test harness: the real server on 127.0.0.1:0 with a fresh SQLite file, driven over HTTP.
#![allow(dead_code)]

pub mod media;

use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use switchboard::config::Config;
use switchboard::server::{Server, ServerError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server with a known API key.
pub struct TestServer {
    pub base: String,
    pub key: String,
    pub client: reqwest::Client,
    pub db_path: PathBuf,
    pub addr: std::net::SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), ServerError>>>,
    _dir: tempfile::TempDir,
}

/// Where the fetched weights are (`make models`); the voice catalogue depends on them.
pub fn models_dir() -> PathBuf {
    std::env::var_os("SWITCHBOARD_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"))
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let db_path = dir.path().join("switchboard.db");
        let key = format!("sb_test_{}", ulid::Ulid::new());
        let mut config = Config {
            database_url: format!("sqlite://{}", db_path.display()),
            models_dir: models_dir(),
            api_key: Some(key.clone()),
            drain_timeout: Duration::from_secs(5),
            recordings_dir: dir.path().join("recordings"),
            ..Config::default()
        };
        tweak(&mut config);
        let key = config.api_key.clone().expect("tests run with a known API key");
        let (server, created) = Server::prepare(config).await.expect("server prepares");
        assert!(created.is_none(), "a registered key means no key is auto-created");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(server.run(listener, async move {
            let _ = rx.await;
        }));
        Self {
            base: format!("http://{addr}"),
            key,
            client: reqwest::Client::new(),
            db_path,
            addr,
            shutdown: Some(tx),
            handle: Some(handle),
            _dir: dir,
        }
    }

    /// Sends a request with the server's key; returns status and JSON body (Null if none).
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_as(Some(&self.key), method, path, body).await
    }

    pub async fn call_as(
        &self,
        key: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, json)
    }

    /// Sends raw bytes as the body (for malformed JSON).
    pub async fn call_raw(&self, method: Method, path: &str, body: &'static str) -> (StatusCode, Value) {
        let resp = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request sent");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None).await
    }

    /// Creates an agent and returns its JSON, asserting 201.
    pub async fn agent(&self, body: Value) -> Value {
        let (s, v) = self.post("/v1/agents", body).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v
    }

    /// Registers a number and returns its JSON, asserting 201.
    pub async fn number(&self, phone: &str) -> Value {
        let (s, v) = self.post("/v1/numbers", serde_json::json!({ "phoneNumber": phone })).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v
    }

    /// Triggers shutdown without waiting.
    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Triggers shutdown and waits for `run` to return.
    pub async fn stop(mut self) -> Result<(), ServerError> {
        self.trigger_shutdown();
        self.handle.take().unwrap().await.expect("server task")
    }

    /// Waits for `run` to return (after `trigger_shutdown`), at most `limit`.
    pub async fn join(&mut self, limit: Duration) -> Option<Result<(), ServerError>> {
        let handle = self.handle.as_mut()?;
        tokio::time::timeout(limit, handle).await.ok().map(|r| r.expect("server task"))
    }
}

/// Asserts an error answer: status, and a `detail` that contains `needle`.
#[track_caller]
pub fn assert_detail(got: &(StatusCode, Value), status: u16, needle: &str) {
    assert_eq!(got.0.as_u16(), status, "body: {}", got.1);
    let detail = got.1["detail"].as_str().unwrap_or_else(|| panic!("no detail in {}", got.1));
    assert!(detail.contains(needle), "detail {detail:?} lacks {needle:?}");
}

/// The record of the newest call once it has ended: what the call tests look at.
pub struct EndedCall {
    pub id: String,
    pub status: switchboard::store::CallStatus,
    pub end_reason: Option<String>,
    pub turns: Vec<switchboard::store::CallTurn>,
    pub events: Vec<switchboard::store::CallEvent>,
}

impl EndedCall {
    /// Events of `kind`.
    pub fn count(&self, kind: &str) -> usize {
        self.events.iter().filter(|e| e.kind == kind).count()
    }

    pub fn first(&self, kind: &str) -> Option<&switchboard::store::CallEvent> {
        self.events.iter().find(|e| e.kind == kind)
    }

    /// Texts of the agent's utterances that started playing, in order.
    pub fn spoken(&self) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e.kind == "agent_started")
            .filter_map(|e| {
                let d: Value = serde_json::from_str(e.detail.as_deref()?).ok()?;
                Some(d["text"].as_str()?.to_string())
            })
            .collect()
    }
}

/// Waits (up to 10 s) for the newest call on `s` to end; then a moment more for the recorder's
/// last writes (turn responses), and reads its record.
pub async fn ended_call(s: &TestServer) -> EndedCall {
    let store =
        switchboard::store::Store::connect(&format!("sqlite://{}", s.db_path.display())).await.unwrap();
    for _ in 0..200 {
        let newest = {
            use sqlx::Row;
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", s.db_path.display())).await.unwrap();
            let row = sqlx::query("SELECT id FROM calls ORDER BY created_at DESC LIMIT 1")
                .fetch_optional(&pool)
                .await
                .unwrap();
            pool.close().await;
            row.map(|r| r.get::<String, _>(0))
        };
        if let Some(id) = newest {
            let call = store.get_call(&id).await.unwrap();
            if call.status.is_final() {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let rec = EndedCall {
                    status: call.status,
                    end_reason: call.end_reason,
                    turns: store.list_call_turns(&id).await.unwrap(),
                    events: store.list_call_events(&id).await.unwrap(),
                    id,
                };
                store.close().await;
                return rec;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the call never ended");
}

/// Plivo's V3 signature of a POST of `form` to `url` (the test's plain values need no
/// URL-decoding): base64 HMAC-SHA256 of `base?sorted-query[.]sorted-form-kv.nonce`.
pub fn plivo_v3(token: &str, url: &str, form: &[(&str, &str)], nonce: &str) -> String {
    use hmac::Mac;
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut q: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    q.sort();
    let mut f: Vec<String> = form.iter().map(|(k, v)| format!("{k}{v}")).collect();
    f.sort();
    let mut signed = base.to_string();
    if !q.is_empty() || !f.is_empty() {
        signed += &format!("?{}", q.join("&"));
    }
    if !q.is_empty() && !f.is_empty() {
        signed.push('.');
    }
    signed += &format!("{}.{nonce}", f.concat());
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(signed.as_bytes());
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, mac.finalize().into_bytes())
}

/// The fields of a `multipart/form-data` body: name → value (a file part as its bytes).
pub fn multipart_fields(content_type: &str, body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let boundary = content_type.split("boundary=").nth(1).expect("boundary").trim_matches('"');
    let delim = format!("--{boundary}");
    let text = body;
    let mut fields = Vec::new();
    let mut rest = text;
    while let Some(at) = find(rest, delim.as_bytes()) {
        rest = &rest[at + delim.len()..];
        let Some(end) = find(rest, delim.as_bytes()) else { break };
        let part = &rest[..end];
        if let Some(h) = find(part, b"\r\n\r\n") {
            let headers = String::from_utf8_lossy(&part[..h]);
            let name =
                headers.split("name=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or("").to_string();
            let value = part[h + 4..].strip_suffix(b"\r\n").unwrap_or(&part[h + 4..]).to_vec();
            fields.push((name, value));
        }
    }
    fields
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
