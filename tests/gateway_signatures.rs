//! Telnyx (Ed25519), Vonage (signed JWT) and Plivo (V3 HMAC) webhook signatures, over real HTTP: with the key
//! configured, a correctly signed webhook is served, and an unsigned, tampered, wrongly keyed
//! or replayed one gets 403 naming what failed and creates nothing.

mod common;

use base64::Engine as _;
use common::TestServer;
use reqwest::StatusCode;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::json;
use switchboard::transport::signatures::{unix_now, vonage_token, TOLERANCE_SECS};

const AGENT_NUMBER: &str = "+14155550100";
const CALLER: &str = "+12125550123";
const PUBLIC: &str = "https://voice.example.com";
const VONAGE_SECRET: &str = "vonage-signature-secret-for-tests";

fn telnyx_keys() -> (Ed25519KeyPair, String) {
    let kp = Ed25519KeyPair::from_seed_unchecked(&[42u8; 32]).unwrap();
    let public = base64::engine::general_purpose::STANDARD.encode(kp.public_key().as_ref());
    (kp, public)
}

fn telnyx_sign(kp: &Ed25519KeyPair, ts: i64, body: &str) -> String {
    let signed = format!("{ts}|{body}");
    base64::engine::general_purpose::STANDARD.encode(kp.sign(signed.as_bytes()).as_ref())
}

async fn server(tweak: impl FnOnce(&mut switchboard::config::Config)) -> TestServer {
    let s = TestServer::start_with(|c| {
        c.public_url = Some(PUBLIC.into());
        tweak(c);
    })
    .await;
    let agent = s.agent(json!({ "name": "Front desk" })).await;
    let (st, n) = s.post("/v1/numbers", json!({ "phoneNumber": AGENT_NUMBER, "agentId": agent["id"] })).await;
    assert_eq!(st, StatusCode::CREATED, "{n}");
    s
}

async fn calls(s: &TestServer) -> i64 {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", s.db_path.display())).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM calls").fetch_one(&pool).await.unwrap();
    pool.close().await;
    n
}

async fn post(
    s: &TestServer,
    path: &str,
    ct: &str,
    body: &str,
    headers: &[(&str, String)],
) -> (StatusCode, String) {
    let mut req =
        s.client.post(format!("{}{path}", s.base)).header("content-type", ct).body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.expect("request sent");
    (resp.status(), resp.text().await.unwrap())
}

#[tokio::test]
async fn telnyx_webhooks_need_a_valid_ed25519_signature_when_the_key_is_set() {
    let (kp, public) = telnyx_keys();
    let s = server(|c| c.gateways.telnyx_public_key = Some(public)).await;
    let form = "CallSid=v3%3Atelnyx-1&From=%2B12125550123&To=%2B14155550100";
    let now = unix_now();
    let good = |ts: i64, body: &str| {
        vec![("telnyx-signature-ed25519", telnyx_sign(&kp, ts, body)), ("telnyx-timestamp", ts.to_string())]
    };
    let form_ct = "application/x-www-form-urlencoded";

    let other = Ed25519KeyPair::from_seed_unchecked(&[1u8; 32]).unwrap();
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a str);
    let refused: Vec<Case> = vec![
        ("unsigned", vec![], "missing telnyx-signature-ed25519"),
        (
            "no timestamp",
            vec![("telnyx-signature-ed25519", telnyx_sign(&kp, now, form))],
            "missing telnyx-timestamp",
        ),
        // Signed over another body (the To changed in transit).
        ("tampered", good(now, &form.replace("0100", "0101")), "does not verify"),
        (
            "other key",
            vec![
                ("telnyx-signature-ed25519", telnyx_sign(&other, now, form)),
                ("telnyx-timestamp", now.to_string()),
            ],
            "does not verify",
        ),
        ("replayed", good(now - TOLERANCE_SECS - 60, form), "replayed"),
    ];
    for (what, headers, says) in refused {
        let (st, body) = post(&s, "/telnyx/voice", form_ct, form, &headers).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{what}: {body}");
        assert!(body.contains(says), "{what}: {body}");
        assert_eq!(calls(&s).await, 0, "{what}: a refused webhook created a call");
    }

    let (st, doc) = post(&s, "/telnyx/voice", form_ct, form, &good(now, form)).await;
    assert_eq!(st, StatusCode::OK, "{doc}");
    assert!(doc.contains("wss://voice.example.com/telnyx/media"), "{doc}");
    assert_eq!(calls(&s).await, 1);

    // The status callback is checked the same way (refused before any lookup).
    let status = "CallSid=v3%3Aunknown&CallStatus=busy";
    let (st, body) = post(&s, "/telnyx/status", form_ct, status, &[]).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    let (st, body) = post(&s, "/telnyx/status", form_ct, status, &good(now, status)).await;
    assert_eq!(
        st,
        StatusCode::NOT_FOUND,
        "signed, so it reaches the handler, which knows no such call: {body}"
    );
}

#[tokio::test]
async fn vonage_webhooks_need_a_valid_signed_jwt_when_the_secret_is_set() {
    let s = server(|c| c.gateways.vonage_signature_secret = Some(VONAGE_SECRET.into())).await;
    let now = unix_now();
    let bearer = |secret: &str, body: &str, iat: i64| {
        vec![("authorization", format!("Bearer {}", vonage_token(secret, body.as_bytes(), iat)))]
    };

    // GET answer (no body): the token signs the empty body.
    let query = "/vonage/answer?to=%2B14155550100&from=%2B12125550123&uuid=vg-1&conversation_uuid=CON-1";
    let get = |headers: Vec<(&'static str, String)>| {
        let mut req = s.client.get(format!("{}{query}", s.base));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    let resp = get(vec![]).await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.text().await.unwrap().contains("missing Authorization"));
    let resp = get(bearer("wrong-secret", "", now)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = get(bearer(VONAGE_SECRET, "", now - TOLERANCE_SECS - 60)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(calls(&s).await, 0, "refused answers created a call");
    let resp = get(bearer(VONAGE_SECRET, "", now)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let ncco = resp.text().await.unwrap();
    assert!(ncco.contains("wss://voice.example.com/vonage/media"), "{ncco}");
    assert_eq!(calls(&s).await, 1);

    // POST answer: the token's payload_hash must be the body's.
    let body =
        json!({"to": AGENT_NUMBER, "from": CALLER, "uuid": "vg-2", "conversation_uuid": "CON-2"}).to_string();
    let other = body.replace("vg-2", "vg-3");
    let (st, text) =
        post(&s, "/vonage/answer", "application/json", &body, &bearer(VONAGE_SECRET, &other, now)).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{text}");
    assert!(text.contains("payload_hash"), "{text}");
    assert_eq!(calls(&s).await, 1);
    let (st, text) =
        post(&s, "/vonage/answer", "application/json", &body, &bearer(VONAGE_SECRET, &body, now)).await;
    assert_eq!(st, StatusCode::OK, "{text}");
    assert_eq!(calls(&s).await, 2);

    // The event webhook too.
    let event = json!({"uuid": "vg-unknown", "status": "busy"}).to_string();
    let (st, text) = post(&s, "/vonage/events", "application/json", &event, &[]).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{text}");
    let (st, text) =
        post(&s, "/vonage/events", "application/json", &event, &bearer(VONAGE_SECRET, &event, now)).await;
    assert_eq!(
        st,
        StatusCode::NOT_FOUND,
        "signed, so it reaches the handler, which knows no such call: {text}"
    );
}

#[tokio::test]
async fn plivo_webhooks_need_a_valid_v3_signature_when_the_auth_token_is_set() {
    const TOKEN: &str = "plivo-auth-token-for-tests";
    let s = server(|c| c.gateways.plivo_auth_token = Some(TOKEN.into())).await;
    let form = [("CallUUID", "pl-1"), ("From", "12125550123"), ("To", "14155550100")];
    let url = format!("{PUBLIC}/plivo/answer");
    let send = |headers: Vec<(&'static str, String)>| {
        let mut req = s.client.post(format!("{}/plivo/answer", s.base)).form(&form);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    let signed = |token: &str, url: &str, form: &[(&str, &str)], nonce: &str| {
        vec![
            ("x-plivo-signature-v3", common::plivo_v3(token, url, form, nonce)),
            ("x-plivo-signature-v3-nonce", nonce.to_string()),
        ]
    };
    let refused = [
        ("unsigned", vec![], "missing X-Plivo-Signature-V3"),
        ("wrong token", signed("not-the-token", &url, &form, "123"), "does not verify"),
        ("other url", signed(TOKEN, &format!("{PUBLIC}/plivo/other"), &form, "123"), "does not verify"),
        ("other form", signed(TOKEN, &url, &[("CallUUID", "pl-2")], "123"), "does not verify"),
    ];
    for (what, headers, says) in refused {
        let resp = send(headers).await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{what}");
        let body = resp.text().await.unwrap();
        assert!(body.contains(says), "{what}: {body}");
        assert_eq!(calls(&s).await, 0, "{what}: a refused webhook created a call");
    }
    let resp = send(signed(TOKEN, &url, &form, "123")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.text().await.unwrap().contains("wss://voice.example.com/plivo/media"));
    assert_eq!(calls(&s).await, 1);
}

#[tokio::test]
async fn without_keys_webhooks_are_not_checked() {
    let s = server(|_| {}).await;
    let form = "CallSid=v3%3Atelnyx-9&From=%2B12125550123&To=%2B14155550100";
    let (st, doc) = post(&s, "/telnyx/voice", "application/x-www-form-urlencoded", form, &[]).await;
    assert_eq!(st, StatusCode::OK, "{doc}");
    let resp = s
        .client
        .get(format!("{}/vonage/answer?to=%2B14155550100&from=%2B12125550123&uuid=vg-9", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(calls(&s).await, 2);
}
