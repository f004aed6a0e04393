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
