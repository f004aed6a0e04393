//! Operator surface over real sockets: health, readiness, metrics, OpenAPI, request ids,
//! keys hashed at rest, revocation, and the graceful drain of in-flight requests.

mod common;

use std::time::Duration;

use common::{assert_detail, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::Row;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn health_readiness_and_metrics_need_no_key() {
    let s = TestServer::start().await;
    let (st, h) = s.call_as(None, Method::GET, "/healthz", None).await;
    assert_eq!((st, h), (StatusCode::OK, json!({"status": "ok"})));
    let (st, r) = s.call_as(None, Method::GET, "/readyz", None).await;
    assert_eq!((st, r), (StatusCode::OK, json!({"status": "ready"})));

    s.agent(json!({"name": "M"})).await;
    s.get("/v1/agents/agt_nope").await;
    let text = s.client.get(format!("{}/metrics", s.base)).send().await.unwrap().text().await.unwrap();
    assert!(
        text.contains(r#"switchboard_http_requests_total{method="POST",route="/v1/agents",status="201"} 1"#),
        "{text}"
    );
    // Routes are labelled by template, not raw path.
    assert!(
        text.contains(
            r#"switchboard_http_requests_total{method="GET",route="/v1/agents/{id}",status="404"} 1"#
        ),
        "{text}"
    );
    assert!(!text.contains("agt_nope"), "raw ids must not become labels");
    assert!(text.contains("# TYPE switchboard_http_request_duration_seconds histogram"), "{text}");
    assert!(text
        .contains(r#"switchboard_http_request_duration_seconds_count{method="POST",route="/v1/agents"} 1"#));

    // Build and process metrics, read at the scrape.
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        text.contains(&format!(r#"switchboard_build_info{{version="{version}",profile="debug"}} 1"#)),
        "{text}"
    );
    let value = |name: &str| -> f64 {
        let line =
            text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("no {name}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(value("switchboard_process_resident_memory_bytes") > 1e6, "RSS in bytes");
    assert!(value("switchboard_process_open_fds") >= 3.0);
    assert!(value("switchboard_process_max_fds") >= value("switchboard_process_open_fds"));
    assert!(value("switchboard_process_threads") >= 2.0);
    assert!(value("switchboard_process_cpu_seconds_total") > 0.0);
    let started = value("switchboard_process_start_time_seconds");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(started <= now + 1.0 && started > now - 3600.0, "started {started}, now {now}");
    assert_eq!(value("switchboard_ws_send_queue_depth"), 0.0, "no call, nothing queued");
    // Voice-path histograms have buckets from 10 ms to 10 s, fine in the 100 ms – 1 s range.
    for le in ["0.01", "0.35", "0.7", "10.0"] {
        assert!(
            text.contains(&format!(r#"switchboard_turn_latency_seconds_bucket{{le="{le}"}}"#)),
            "{le}: {text}"
        );
    }
}

#[tokio::test]
async fn openapi_lists_every_route() {
    let s = TestServer::start().await;
    let (st, doc) = s.call_as(None, Method::GET, "/openapi.json", None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    let expected: &[(&str, &str)] = &[
        ("/v1/agents", "post"),
        ("/v1/agents", "get"),
        ("/v1/agents/voices", "get"),
        ("/v1/agents/languages", "get"),
        ("/v1/agents/{id}", "get"),
        ("/v1/agents/{id}", "patch"),
        ("/v1/agents/{id}", "delete"),
        ("/v1/agents/{id}/numbers", "post"),
        ("/v1/agents/{id}/numbers/{number_id}", "delete"),
        ("/v1/numbers", "post"),
        ("/v1/numbers", "get"),
        ("/v1/numbers/{id}", "get"),
        ("/v1/numbers/{id}", "patch"),
        ("/v1/numbers/{id}", "delete"),
        ("/v1/agents/{id}/webhook", "post"),
        ("/v1/agents/{id}/webhook", "get"),
        ("/v1/agents/{id}/webhook", "delete"),
        ("/v1/agents/{id}/webhook/deliveries", "get"),
        ("/v1/agents/{id}/webhook/test", "post"),
        ("/v1/calls", "get"),
        ("/v1/calls", "post"),
        ("/v1/calls/{id}", "get"),
        ("/v1/calls/{id}/end", "post"),
        ("/v1/calls/{id}/transcript", "get"),
        ("/v1/calls/{id}/transcript/stream", "get"),
        ("/v1/calls/{id}/recording", "get"),
        ("/v1/agents/{id}/calls", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    ];
    let paths = doc["paths"].as_object().unwrap();
    for (p, m) in expected {
        assert!(paths.get(*p).and_then(|o| o.get(*m)).is_some(), "{m} {p} missing from /openapi.json");
    }
    let documented: usize = paths.values().map(|o| o.as_object().unwrap().len()).sum();
    assert_eq!(documented, expected.len(), "undocumented or unexpected operations: {:?}", paths.keys());
    // Request bodies carry the agent fields.
    let schema = &doc["components"]["schemas"]["AgentCreate"]["properties"];
    for f in ["name", "voiceSpeed", "interruptionSensitivity", "denoisingMode", "language"] {
        assert!(schema.get(f).is_some(), "AgentCreate lacks {f}");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn api_keys_are_hashed_at_rest_and_revocable() {
    let s = TestServer::start().await;
    // Use the API so the key is certainly in play.
    assert_eq!(s.get("/v1/agents").await.0, StatusCode::OK);

    let url = format!("sqlite://{}", s.db_path.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let rows =
        sqlx::query("SELECT id, name, key_prefix, key_hash FROM api_keys").fetch_all(&pool).await.unwrap();
    assert_eq!(rows.len(), 1);
    let hash: String = rows[0].get("key_hash");
    assert_eq!(hash, hex::encode(Sha256::digest(s.key.as_bytes())));
    let prefix: String = rows[0].get("key_prefix");
    assert!(s.key.starts_with(&prefix) && prefix.len() < s.key.len() / 2, "prefix {prefix}");
    // No column of any row holds the key in clear, and neither do the database files.
    let dump: Vec<String> =
        sqlx::query("SELECT id || name || key_prefix || key_hash || created_at FROM api_keys")
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect();
    assert!(dump.iter().all(|row| !row.contains(&s.key)));
    let secret_tail = &s.key.as_bytes()[s.key.len() - 16..];
    for suffix in ["", "-wal"] {
        let path = format!("{}{suffix}", s.db_path.display());
        if let Ok(bytes) = std::fs::read(&path) {
            assert!(!bytes.windows(secret_tail.len()).any(|w| w == secret_tail), "{path} holds the key");
        }
    }

    // Revoke through the store: the key stops working at once.
    let id: String = rows[0].get("id");
    let store = switchboard::store::Store::connect(&url).await.unwrap();
    store.revoke_key(&id).await.unwrap();
    assert_detail(&s.get("/v1/agents").await, 401, "revoked");
    // Health stays open.
    assert_eq!(s.call_as(None, Method::GET, "/healthz", None).await.0, StatusCode::OK);
}

#[tokio::test]
async fn request_ids_unknown_routes_and_methods() {
    let s = TestServer::start().await;
    let resp = s.client.get(format!("{}/healthz", s.base)).send().await.unwrap();
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 26, "a ULID: {id}");
    let resp = s
        .client
        .get(format!("{}/healthz", s.base))
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-abc-123");

    assert_detail(&s.get("/v2/agents").await, 404, "no route");
    let resp = s.client.put(format!("{}/v1/agents", s.base)).bearer_auth(&s.key).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let v: Value = resp.json().await.unwrap();
    assert!(v["detail"].as_str().unwrap().contains("PUT"), "{v}");
}

/// Writes the head and half the body of a POST, so the request is in flight.
async fn half_sent_request(s: &TestServer, body: &str) -> tokio::net::TcpStream {
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "POST /v1/agents HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        s.key,
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&body.as_bytes()[..body.len() / 2]).await.unwrap();
    tcp.flush().await.unwrap();
    // Let the server read the head and start the handler.
    tokio::time::sleep(Duration::from_millis(200)).await;
    tcp
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_then_stops_accepting() {
    let mut s = TestServer::start().await;
    let body = r#"{"name": "Late but complete"}"#;
    let mut tcp = half_sent_request(&s, body).await;

    s.trigger_shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Still running: the in-flight request holds the drain open.
    assert!(s.join(Duration::from_millis(50)).await.is_none(), "server quit with a request in flight");

    tcp.write_all(&body.as_bytes()[body.len() / 2..]).await.unwrap();
    let mut resp = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut resp)).await;
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 201"), "in-flight request not completed: {resp}");
    assert!(resp.contains("Late but complete"));

    let res = s.join(Duration::from_secs(10)).await.expect("server stops after draining");
    assert!(res.is_ok(), "{res:?}");
    // No longer accepting.
    assert!(tokio::net::TcpStream::connect(s.addr).await.is_err(), "still accepting after shutdown");
    // The request that finished during the drain was committed.
    let store =
        switchboard::store::Store::connect(&format!("sqlite://{}", s.db_path.display())).await.unwrap();
    let (agents, total) = store.list_agents(10, 0).await.unwrap();
    assert_eq!((total, agents[0].config.name.as_str()), (1, "Late but complete"));
}

#[tokio::test]
async fn drain_deadline_bounds_a_stuck_request() {
    let mut s = TestServer::start_with(|c| c.drain_timeout = Duration::from_secs(1)).await;
    let _stuck = half_sent_request(&s, r#"{"name": "never finished"}"#).await;
    s.trigger_shutdown();
    // The stuck client never sends the rest: the deadline ends the server anyway.
    let res = s.join(Duration::from_secs(15)).await.expect("deadline forces the stop");
    assert!(res.is_ok(), "{res:?}");
    let store =
        switchboard::store::Store::connect(&format!("sqlite://{}", s.db_path.display())).await.unwrap();
    assert_eq!(store.list_agents(10, 0).await.unwrap().1, 0, "nothing half-written");
}

/// Every metric the Grafana dashboard queries is one the server exports (after a call, so the
/// per-call families exist), and the dashboard is valid JSON with its panels laid out.
#[tokio::test]
async fn the_grafana_dashboard_queries_only_exported_metrics() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/switchboard.json");
    let dash: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    let mut names = std::collections::BTreeSet::new();
    for p in panels {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(at) = rest.find("switchboard_") {
                let tail = &rest[at..];
                let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
                names.insert(tail[..end].to_string());
                rest = &tail[end..];
            }
        }
    }
    let s = TestServer::start().await;
    let text = s.client.get(format!("{}/metrics", s.base)).send().await.unwrap().text().await.unwrap();
    let families: std::collections::BTreeSet<&str> =
        text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
    for name in &names {
        let family = ["_bucket", "_count", "_sum", "_total"]
            .iter()
            .find_map(|sfx| name.strip_suffix(sfx))
            .filter(|f| families.contains(f))
            .unwrap_or(name);
        assert!(families.contains(family), "the dashboard queries {name}, which /metrics does not export");
    }
    for must in [
        "switchboard_calls_active",
        "switchboard_turn_latency_seconds_bucket",
        "switchboard_playout_late_frames_total",
    ] {
        assert!(names.contains(must), "the dashboard lacks {must}");
    }
}
