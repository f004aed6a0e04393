//! Gateway REST call control against a local recording HTTP server: the exact request each
//! gateway gets for hang-up and transfer (method, path, auth, body), and the errors for missing
//! credentials, missing call ids, gateway failures and unreachable gateways.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::Router;
use base64::Engine as _;
use serde_json::{json, Value};
use switchboard::config::GatewayConfig;
use switchboard::transport::control::{ControlError, GatewayControl};
use switchboard::transport::{Protocol, StartInfo};

/// One request the fake gateway received.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: String,
}

impl Seen {
    fn form(&self) -> HashMap<String, String> {
        assert!(
            self.content_type.as_deref().is_some_and(|c| c.starts_with("application/x-www-form-urlencoded")),
            "form content type: {self:?}"
        );
        parse_form(&self.body)
    }

    fn json(&self) -> Value {
        assert!(
            self.content_type.as_deref().is_some_and(|c| c.starts_with("application/json")),
            "json content type: {self:?}"
        );
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("JSON body {:?}: {e}", self.body))
    }
}

/// A local HTTP server recording every request; answers `status` to all of them.
struct Gateway {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

#[derive(Clone)]
struct GatewayState {
    seen: Arc<Mutex<Vec<Seen>>>,
    status: StatusCode,
}

async fn record(
    State(st): State<GatewayState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    st.seen.lock().unwrap().push(Seen {
        method,
        path: uri.path().to_string(),
        authorization: header("authorization"),
        content_type: header("content-type"),
        body: String::from_utf8(body.to_vec()).unwrap(),
    });
    let body = if st.status.is_success() {
        String::new()
    } else {
        format!("{{\"error\":\"{}\"}}", "x".repeat(1000))
    };
    (st.status, body)
}

impl Gateway {
    async fn start(status: StatusCode) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new().fallback(record).with_state(GatewayState { seen: seen.clone(), status });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { base: format!("http://{addr}"), seen }
    }

    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }

    /// Every base URL pointed here; every credential set.
    fn config(&self) -> GatewayConfig {
        full_config(&self.base)
    }
}

/// Every base URL at `base`; every credential set.
fn full_config(base: &str) -> GatewayConfig {
    GatewayConfig {
        twilio_account_sid: Some("AC0123456789abcdef".into()),
        twilio_auth_token: Some("tw-secret".into()),
        twilio_api_base: base.to_string(),
        telnyx_api_key: Some("KEYtelnyx".into()),
        telnyx_api_base: base.to_string(),
        telnyx_connection_id: Some("texml-app-1".into()),
        plivo_auth_id: Some("MAPLIVOID".into()),
        plivo_auth_token: Some("pl-secret".into()),
        plivo_api_base: base.to_string(),
        vonage_jwt: Some("eyJ.vonage.jwt".into()),
        vonage_api_base: base.to_string(),
        ..GatewayConfig::default()
    }
}

fn parse_form(body: &str) -> HashMap<String, String> {
    fn decode(s: &str) -> String {
        let bytes = s.replace('+', " ").into_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

fn start(call_id: Option<&str>, account_id: Option<&str>) -> StartInfo {
    StartInfo {
        stream_id: "stream-1".into(),
        call_id: call_id.map(str::to_string),
        account_id: account_id.map(str::to_string),
        ..Default::default()
    }
}

const TO: &str = "+14155550123";

#[tokio::test]
async fn twilio_hangup_and_transfer_update_the_call() {
    let gw = Gateway::start(StatusCode::OK).await;
    let control = GatewayControl::new(gw.config());
    let info = start(Some("CA9f8e7d"), Some("ACfromstart"));

    control.hangup(Protocol::Twilio, &info).await.expect("hang-up");
    control.transfer(Protocol::Twilio, &info, TO).await.expect("transfer");
    let seen = gw.take();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for s in &seen {
        assert_eq!(s.method, Method::POST);
        // The configured account wins over the start message's.
        assert_eq!(s.path, "/2010-04-01/Accounts/AC0123456789abcdef/Calls/CA9f8e7d.json");
        assert_eq!(s.authorization.as_deref(), Some(basic("AC0123456789abcdef", "tw-secret").as_str()));
    }
    assert_eq!(seen[0].form(), HashMap::from([("Status".to_string(), "completed".to_string())]));
    assert_eq!(
        seen[1].form(),
        HashMap::from([("Twiml".to_string(), "<Response><Dial>+14155550123</Dial></Response>".to_string())])
    );

    // Without a configured account, the start message's accountSid is used.
    let control = GatewayControl::new(GatewayConfig { twilio_account_sid: None, ..gw.config() });
    control.hangup(Protocol::Twilio, &info).await.expect("hang-up");
    let seen = gw.take();
    assert_eq!(seen[0].path, "/2010-04-01/Accounts/ACfromstart/Calls/CA9f8e7d.json");
    assert_eq!(seen[0].authorization.as_deref(), Some(basic("ACfromstart", "tw-secret").as_str()));
}

#[tokio::test]
async fn telnyx_hangup_and_transfer_use_call_control_actions() {
    let gw = Gateway::start(StatusCode::OK).await;
    let control = GatewayControl::new(gw.config());
    let info = start(Some("v3:MdI91X4lWFEs7IgbBEOT9M4AigoY08M0WWZFISt1Yw2axZ_IiE4pqg"), None);

    control.hangup(Protocol::Telnyx, &info).await.expect("hang-up");
    control.transfer(Protocol::Telnyx, &info, TO).await.expect("transfer");
    let seen = gw.take();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let call = "/v2/calls/v3:MdI91X4lWFEs7IgbBEOT9M4AigoY08M0WWZFISt1Yw2axZ_IiE4pqg/actions";
    assert_eq!(
        (seen[0].method.clone(), seen[0].path.as_str()),
        (Method::POST, format!("{call}/hangup").as_str())
    );
    assert_eq!(seen[0].json(), json!({}));
    assert_eq!(
        (seen[1].method.clone(), seen[1].path.as_str()),
        (Method::POST, format!("{call}/transfer").as_str())
    );
    assert_eq!(seen[1].json(), json!({ "to": TO }));
    for s in &seen {
        assert_eq!(s.authorization.as_deref(), Some("Bearer KEYtelnyx"));
    }
}

#[tokio::test]
async fn plivo_hangup_deletes_and_transfer_redirects_the_a_leg() {
    let gw = Gateway::start(StatusCode::NO_CONTENT).await;
    let control = GatewayControl::new(gw.config()).with_public_url(Some("https://voice.example.com/".into()));
    let info = start(Some("12345678-1234-1234-1234-123456789abc"), Some("MAXXXXXXXXXXXXXXXXXX"));

    control.hangup(Protocol::Plivo, &info).await.expect("hang-up");
    control.transfer(Protocol::Plivo, &info, TO).await.expect("transfer");
    let seen = gw.take();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let path = "/v1/Account/MAPLIVOID/Call/12345678-1234-1234-1234-123456789abc/";
    assert_eq!((seen[0].method.clone(), seen[0].path.as_str()), (Method::DELETE, path));
    assert!(seen[0].body.is_empty(), "{:?}", seen[0]);
    assert_eq!((seen[1].method.clone(), seen[1].path.as_str()), (Method::POST, path));
    assert_eq!(
        seen[1].form(),
        HashMap::from([
            ("legs".to_string(), "aleg".to_string()),
            (
                "aleg_url".to_string(),
                "https://voice.example.com/plivo/transfer?to=%2B14155550123".to_string()
            ),
            ("aleg_method".to_string(), "GET".to_string()),
        ])
    );
    for s in &seen {
        assert_eq!(s.authorization.as_deref(), Some(basic("MAPLIVOID", "pl-secret").as_str()));
    }

    // A Plivo transfer needs the public URL Plivo fetches its XML from.
    let control = GatewayControl::new(gw.config());
    let e = control.transfer(Protocol::Plivo, &info, TO).await.unwrap_err();
    assert!(matches!(e, ControlError::NoPublicUrl("plivo")), "{e:?}");
    assert!(gw.take().is_empty());
}

#[tokio::test]
async fn vonage_hangup_and_transfer_update_the_call() {
    let gw = Gateway::start(StatusCode::NO_CONTENT).await;
    let control = GatewayControl::new(gw.config());
    let info = start(Some("63f61863-4a51-4f6b-86e1-46edebcf9356"), None);

    control.hangup(Protocol::Vonage, &info).await.expect("hang-up");
    control.transfer(Protocol::Vonage, &info, TO).await.expect("transfer");
    let seen = gw.take();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for s in &seen {
        assert_eq!(s.method, Method::PUT);
        assert_eq!(s.path, "/v1/calls/63f61863-4a51-4f6b-86e1-46edebcf9356");
        assert_eq!(s.authorization.as_deref(), Some("Bearer eyJ.vonage.jwt"));
    }
    assert_eq!(seen[0].json(), json!({ "action": "hangup" }));
    assert_eq!(
        seen[1].json(),
        json!({
            "action": "transfer",
            "destination": {
                "type": "ncco",
                "ncco": [{ "action": "connect", "endpoint": [{ "type": "phone", "number": "14155550123" }] }],
            },
        })
    );
}

#[tokio::test]
async fn native_needs_no_request() {
    let gw = Gateway::start(StatusCode::OK).await;
    // Even with nothing configured, the native protocol's control is in-band.
    let control = GatewayControl::new(GatewayConfig::default());
    control.hangup(Protocol::Native, &start(None, None)).await.expect("native hang-up");
    control.transfer(Protocol::Native, &start(None, None), TO).await.expect("native transfer");
    let control = GatewayControl::new(gw.config());
    control.hangup(Protocol::Native, &start(Some("x"), None)).await.expect("native hang-up");
    assert!(gw.take().is_empty());
}

#[tokio::test]
async fn missing_credentials_are_not_configured_and_send_nothing() {
    let gw = Gateway::start(StatusCode::OK).await;
    let bases = GatewayConfig {
        twilio_api_base: gw.base.clone(),
        telnyx_api_base: gw.base.clone(),
        plivo_api_base: gw.base.clone(),
        vonage_api_base: gw.base.clone(),
        ..GatewayConfig::default()
    };
    let info = start(Some("call-1"), None);
    let control =
        GatewayControl::new(bases.clone()).with_public_url(Some("https://voice.example.com".into()));
    for protocol in [Protocol::Twilio, Protocol::Telnyx, Protocol::Plivo, Protocol::Vonage] {
        let e = control.hangup(protocol, &info).await.unwrap_err();
        assert!(matches!(e, ControlError::NotConfigured(p) if p == protocol.as_str()), "{protocol:?}: {e:?}");
        let e = control.transfer(protocol, &info, TO).await.unwrap_err();
        assert!(matches!(e, ControlError::NotConfigured(p) if p == protocol.as_str()), "{protocol:?}: {e:?}");
    }
    // Half a credential pair is no credential; so is an empty one.
    let partial = [
        GatewayConfig { twilio_auth_token: Some("t".into()), ..bases.clone() },
        GatewayConfig { twilio_account_sid: Some("AC1".into()), ..bases.clone() },
        GatewayConfig { plivo_auth_id: Some("MA1".into()), ..bases.clone() },
        GatewayConfig { telnyx_api_key: Some(String::new()), ..bases.clone() },
    ];
    for (config, protocol) in
        partial.into_iter().zip([Protocol::Twilio, Protocol::Twilio, Protocol::Plivo, Protocol::Telnyx])
    {
        let e = GatewayControl::new(config).hangup(protocol, &info).await.unwrap_err();
        assert!(matches!(e, ControlError::NotConfigured(_)), "{protocol:?}: {e:?}");
    }
    assert!(gw.take().is_empty());
}

#[tokio::test]
async fn no_call_id_and_bad_targets_are_refused_before_any_request() {
    let gw = Gateway::start(StatusCode::OK).await;
    let control = GatewayControl::new(gw.config()).with_public_url(Some("https://voice.example.com".into()));
    for protocol in [Protocol::Twilio, Protocol::Telnyx, Protocol::Plivo, Protocol::Vonage] {
        for info in [start(None, None), start(Some(""), None)] {
            let e = control.hangup(protocol, &info).await.unwrap_err();
            assert!(matches!(e, ControlError::NoCallId(p) if p == protocol.as_str()), "{protocol:?}: {e:?}");
            assert!(e.to_string().contains("call id"), "{e}");
        }
        for bad in ["4155550123", "+1<Dial>", ""] {
            let e = control.transfer(protocol, &start(Some("c1"), None), bad).await.unwrap_err();
            assert!(matches!(&e, ControlError::InvalidTarget(t) if t == bad), "{protocol:?}: {e:?}");
        }
    }
    assert!(gw.take().is_empty());
}

#[tokio::test]
async fn gateway_errors_carry_the_status_and_a_truncated_body() {
    let gw = Gateway::start(StatusCode::INTERNAL_SERVER_ERROR).await;
    let control = GatewayControl::new(gw.config()).with_public_url(Some("https://voice.example.com".into()));
    let info = start(Some("call-1"), Some("AC1"));
    for protocol in [Protocol::Twilio, Protocol::Telnyx, Protocol::Plivo, Protocol::Vonage] {
        for result in [control.hangup(protocol, &info).await, control.transfer(protocol, &info, TO).await] {
            let e = result.unwrap_err();
            match &e {
                ControlError::Status { protocol: p, status, body, .. } => {
                    assert_eq!((*p, *status), (protocol.as_str(), 500));
                    assert!(body.starts_with("{\"error\":\"xxx"), "{body}");
                    assert!(
                        body.chars().count() <= 301,
                        "body not truncated: {} chars",
                        body.chars().count()
                    );
                }
                other => panic!("{protocol:?}: expected a status error, got {other:?}"),
            }
            let text = e.to_string();
            assert!(text.contains("500"), "{text}");
            for secret in ["tw-secret", "KEYtelnyx", "pl-secret", "eyJ.vonage.jwt"] {
                assert!(!text.contains(secret), "credential in error: {text}");
            }
        }
    }
    assert_eq!(gw.take().len(), 8);
}

#[tokio::test]
async fn an_unreachable_gateway_is_a_network_error() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let control = GatewayControl::new(full_config(&base));
    for protocol in [Protocol::Twilio, Protocol::Telnyx, Protocol::Plivo, Protocol::Vonage] {
        let e = control.hangup(protocol, &start(Some("call-1"), None)).await.unwrap_err();
        assert!(
            matches!(e, ControlError::Network { protocol: p, .. } if p == protocol.as_str()),
            "{protocol:?}: {e:?}"
        );
        assert!(!e.to_string().contains("secret"), "{e}");
    }
}
