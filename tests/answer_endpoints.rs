//! Incoming-call answer endpoints over real HTTP: TwiML (`/twilio/voice`), TeXML
//! (`/telnyx/voice`), NCCO (`/vonage/answer`) and Plivo XML (`/plivo/answer`, `/plivo/transfer`):
//! the document each gateway gets, the `ringing` call record and media token behind it, refusals
//! that leave no record, XML escaping, and Twilio request signatures.

mod common;

use base64::Engine as _;
use common::TestServer;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha1::Sha1;
use switchboard::store::{CallStatus, Store};
use switchboard::transport::answer::{twilio_signature, twilio_signature_valid};

const AGENT_NUMBER: &str = "+14155550100";
const IDLE_NUMBER: &str = "+14155550199";
const UNKNOWN_NUMBER: &str = "+14155550142";
const CALLER: &str = "+12125550123";
const PUBLIC: &str = "https://voice.example.com";
const AUTH_TOKEN: &str = "twilio-auth-token-for-tests";

/// A server with an agent on [`AGENT_NUMBER`] and [`IDLE_NUMBER`] registered without one.
struct Fixture {
    s: TestServer,
    agent_id: String,
    number_id: String,
}

async fn fixture(tweak: impl FnOnce(&mut switchboard::config::Config)) -> Fixture {
    let s = TestServer::start_with(tweak).await;
    let agent = s.agent(json!({ "name": "Front desk" })).await;
    let agent_id = agent["id"].as_str().unwrap().to_string();
    let (st, n) = s.post("/v1/numbers", json!({ "phoneNumber": AGENT_NUMBER, "agentId": agent_id })).await;
    assert_eq!(st, StatusCode::CREATED, "{n}");
    s.number(IDLE_NUMBER).await;
    Fixture { s, agent_id, number_id: n["id"].as_str().unwrap().to_string() }
}

async fn store(s: &TestServer) -> Store {
    Store::connect(&format!("sqlite://{}", s.db_path.display())).await.expect("store opens")
}

async fn call_count(s: &TestServer) -> i64 {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", s.db_path.display())).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM calls").fetch_one(&pool).await.unwrap();
    pool.close().await;
    n
}

/// Posts a form; returns status, content type and body.
async fn post_form(
    s: &TestServer,
    path: &str,
    form: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> (StatusCode, String, String) {
    let mut req = s.client.post(format!("{}{path}", s.base)).form(form);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status();
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    (status, ct, resp.text().await.unwrap())
}

async fn get_path(s: &TestServer, path: &str, headers: &[(&str, &str)]) -> (StatusCode, String, String) {
    let mut req = s.client.get(format!("{}{path}", s.base));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status();
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    (status, ct, resp.text().await.unwrap())
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The raw (still escaped) value of attribute `attr` on the first `<tag` element.
fn attr_raw(doc: &str, tag: &str, attr: &str) -> Option<String> {
    let start = doc.find(&format!("<{tag} "))?;
    let end = start + doc[start..].find('>')?;
    let element = &doc[start..end];
    let key = format!(" {attr}=\"");
    let at = element.find(&key)? + key.len();
    let len = element[at..].find('"')?;
    Some(element[at..at + len].to_string())
}

/// The unescaped value of `<Parameter name="{name}" value="…"/>`.
fn parameter(doc: &str, name: &str) -> Option<String> {
    let key = format!("<Parameter name=\"{name}\" value=\"");
    let at = doc.find(&key)? + key.len();
    let len = doc[at..].find('"')?;
    Some(unescape(&doc[at..at + len]))
}

fn twilio_form<'a>(call_sid: &'a str, from: &'a str, to: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CallSid", call_sid),
        ("AccountSid", "AC0000000000000000000000000000test"),
        ("From", from),
        ("To", to),
        ("Direction", "inbound"),
        ("CallStatus", "ringing"),
        ("ApiVersion", "2010-04-01"),
    ]
}

/// Checks the `ringing` record behind an answer and that its token is the call's live media token.
async fn assert_ringing_call(
    f: &Fixture,
    call_id: &str,
    token: &str,
    transport: &str,
    gateway_call_id: &str,
    from: &str,
) {
    let store = store(&f.s).await;
    let call = store.get_call(call_id).await.expect("the answer's callId is a stored call");
    assert_eq!(call.status, CallStatus::Ringing);
    assert_eq!(call.direction, "inbound");
    assert_eq!(call.transport.as_deref(), Some(transport));
    assert_eq!(call.gateway_call_id.as_deref(), Some(gateway_call_id));
    assert_eq!(call.from_number.as_deref(), Some(from));
    assert_eq!(call.to_number.as_deref(), Some(AGENT_NUMBER));
    assert_eq!(call.agent_id.as_deref(), Some(f.agent_id.as_str()));
    assert_eq!(call.agent_name.as_deref(), Some("Front desk"));
    assert_eq!(call.phone_number_id.as_deref(), Some(f.number_id.as_str()));
    assert_eq!(call.phone_number.as_deref(), Some(AGENT_NUMBER));
    assert!(token.starts_with("mt_"), "media token {token:?}");
    // The token is the one minted for this call: redeeming it claims exactly this call.
    let claimed = store.claim_call(token, transport, "stream-1", None).await.unwrap().expect("token claims");
    assert_eq!(claimed.id, call_id);
    assert_eq!(claimed.status, CallStatus::InProgress);
    store.close().await;
}

// ---------------------------------------------------------------------------------------------
// Twilio
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn twilio_answer_connects_the_agent_through_the_public_url() {
    let f = fixture(|c| {
        c.public_url = Some(PUBLIC.into());
        c.media_token_ttl = std::time::Duration::from_secs(3600);
    })
    .await;
    let before = chrono::Utc::now();
    let (st, ct, doc) =
        post_form(&f.s, "/twilio/voice", &twilio_form("CA100", CALLER, AGENT_NUMBER), &[]).await;
    let after = chrono::Utc::now();
    assert_eq!(st, StatusCode::OK, "{doc}");
    assert!(ct.starts_with("text/xml"), "content type {ct}");
    assert!(
        doc.starts_with(
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="wss://voice.example.com/twilio/media">"#
        ),
        "{doc}"
    );
    assert!(doc.ends_with("</Stream></Connect></Response>"), "{doc}");
    assert_eq!(parameter(&doc, "agentId").as_deref(), Some(f.agent_id.as_str()));
    assert_eq!(parameter(&doc, "from").as_deref(), Some(CALLER));
    assert_eq!(parameter(&doc, "to").as_deref(), Some(AGENT_NUMBER));
    let token = parameter(&doc, "token").expect("token parameter");
    let call_id = parameter(&doc, "callId").expect("callId parameter");
    assert_eq!(call_count(&f.s).await, 1);

    // The token lives `media_token_ttl` from the answer.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", f.s.db_path.display())).await.unwrap();
    let expires: String = sqlx::query_scalar("SELECT media_token_expires_at FROM calls WHERE id = $1")
        .bind(&call_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    let expires = chrono::DateTime::parse_from_rfc3339(&expires).unwrap().with_timezone(&chrono::Utc);
    let ttl = chrono::Duration::seconds(3600);
    let slack = chrono::Duration::seconds(1);
    assert!(expires >= before + ttl - slack && expires <= after + ttl + slack, "expires {expires}");

    assert_ringing_call(&f, &call_id, &token, "twilio", "CA100", CALLER).await;
}

#[tokio::test]
async fn every_answer_takes_its_host_from_forwarded_headers_or_host() {
    let f = fixture(|_| {}).await;
    let own = f.s.addr.to_string();
    let cases: [(&[(&str, &str)], String); 3] = [
        (&[], format!("wss://{own}")),
        (
            &[("x-forwarded-proto", "http"), ("x-forwarded-host", "edge.example.com:8443")],
            "ws://edge.example.com:8443".into(),
        ),
        (
            &[("x-forwarded-proto", "https"), ("x-forwarded-host", "edge.example.com")],
            "wss://edge.example.com".into(),
        ),
    ];
    for (i, (headers, base)) in cases.iter().enumerate() {
        let sid = format!("CA-host-{i}");
        let (st, _, doc) =
            post_form(&f.s, "/twilio/voice", &twilio_form(&sid, CALLER, AGENT_NUMBER), headers).await;
        assert_eq!(st, StatusCode::OK, "{doc}");
        assert_eq!(attr_raw(&doc, "Stream", "url"), Some(format!("{base}/twilio/media")), "{doc}");

        let (st, _, doc) =
            post_form(&f.s, "/telnyx/voice", &twilio_form(&sid, CALLER, AGENT_NUMBER), headers).await;
        assert_eq!(st, StatusCode::OK, "{doc}");
        assert_eq!(attr_raw(&doc, "Stream", "url"), Some(format!("{base}/telnyx/media")), "{doc}");

        let q = format!(
            "/vonage/answer?to=14155550100&from=12125550123&uuid=uuid-host-{i}&conversation_uuid=CON-{i}"
        );
        let (st, _, body) = get_path(&f.s, &q, headers).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        let ncco: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(ncco[0]["endpoint"][0]["uri"], format!("{base}/vonage/media"), "{ncco}");

        let form = [("CallUUID", sid.as_str()), ("From", "12125550123"), ("To", "14155550100")];
        let (st, _, doc) = post_form(&f.s, "/plivo/answer", &form, headers).await;
        assert_eq!(st, StatusCode::OK, "{doc}");
        assert!(doc.contains(&format!(">{base}/plivo/media</Stream>")), "{doc}");
    }
    assert_eq!(call_count(&f.s).await, 12);
}

#[tokio::test]
async fn twilio_refuses_unknown_numbers_and_numbers_without_agent_without_a_record() {
    let f = fixture(|c| c.public_url = Some(PUBLIC.into())).await;
    let reject = r#"<?xml version="1.0" encoding="UTF-8"?><Response><Reject reason="rejected"/></Response>"#;
    for to in [UNKNOWN_NUMBER, IDLE_NUMBER] {
        let (st, ct, doc) = post_form(&f.s, "/twilio/voice", &twilio_form("CA200", CALLER, to), &[]).await;
        assert_eq!(st, StatusCode::OK, "{doc}");
        assert!(ct.starts_with("text/xml"), "{ct}");
        assert_eq!(doc, reject);
    }
    assert_eq!(call_count(&f.s).await, 0);
}

#[tokio::test]
async fn twilio_escapes_every_value_in_the_twiml() {
    let f = fixture(|c| c.public_url = Some(PUBLIC.into())).await;
    let nasty = r#"a&b<c"d'e>"#;
    let (st, _, doc) =
        post_form(&f.s, "/twilio/voice", &twilio_form("CA300", nasty, AGENT_NUMBER), &[]).await;
    assert_eq!(st, StatusCode::OK, "{doc}");
    assert!(doc.contains(r#"<Parameter name="from" value="a&amp;b&lt;c&quot;d&apos;e&gt;"/>"#), "{doc}");
    assert!(!doc.contains("a&b") && !doc.contains("<c"), "{doc}");
    let call_id = parameter(&doc, "callId").unwrap();
    let store = store(&f.s).await;
    assert_eq!(store.get_call(&call_id).await.unwrap().from_number.as_deref(), Some(nasty));
}

#[tokio::test]
async fn twilio_without_call_sid_or_to_is_a_bad_request() {
    let f = fixture(|c| c.public_url = Some(PUBLIC.into())).await;
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[("From", CALLER), ("To", AGENT_NUMBER)], "CallSid"),
        (&[("CallSid", "CA400"), ("From", CALLER)], "To"),
        (&[("CallSid", "CA400"), ("To", "")], "To"),
    ];
    for (form, field) in cases {
        let (st, ct, body) = post_form(&f.s, "/twilio/voice", form, &[]).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
        assert!(ct.starts_with("application/json"), "{ct}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v["detail"].as_str().unwrap().starts_with(field), "{v}");
    }
    assert_eq!(call_count(&f.s).await, 0);
}

// ---------------------------------------------------------------------------------------------
// Twilio signatures
// ---------------------------------------------------------------------------------------------

/// Twilio's algorithm, written out independently of the server's.
fn expected_signature(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut data = url.to_string();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = Hmac::<Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn owned(params: &[(&str, &str)]) -> Vec<(String, String)> {
    params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn twilio_signature_matches_twilios_published_vectors() {
    // The voice and SMS requests from twilio-ruby's request validator spec.
    let token = "2bd9e9638872de601313dc77410d3b23";
    let voice = [
        ("ToState", "California"),
        ("CalledState", "California"),
        ("Direction", "inbound"),
        ("FromState", "CA"),
        ("AccountSid", "ACba8bc05eacf94afdae398e642c9cc32d"),
        ("Caller", "+14153595711"),
        ("CallerZip", "94108"),
        ("CallerCountry", "US"),
        ("From", "+14153595711"),
        ("FromCity", "SAN FRANCISCO"),
        ("CallerCity", "SAN FRANCISCO"),
        ("To", "+14157669926"),
        ("FromZip", "94108"),
        ("FromCountry", "US"),
        ("ToCity", ""),
        ("CallStatus", "ringing"),
        ("CalledCity", ""),
        ("CallerState", "CA"),
        ("CalledZip", ""),
        ("ToZip", ""),
        ("ToCountry", "US"),
        ("CallSid", "CA136d09cd59a3c0ec8dbff44da5c03f31"),
        ("CalledCountry", "US"),
        ("Called", "+14157669926"),
        ("ApiVersion", "2010-04-01"),
        ("ApplicationSid", "AP44efecad51364e80b133bb7c07eb8204"),
    ];
    let url = "http://twiliotests.heroku.com/validate/voice";
    assert_eq!(twilio_signature(token, url, &owned(&voice)), "oVb2kXoVy8GEfwBDjR8bk/ZZ6eA=");
    assert!(twilio_signature_valid(token, url, &owned(&voice), "oVb2kXoVy8GEfwBDjR8bk/ZZ6eA="));
    // Twilio may sign with the default port spelled out.
    assert!(twilio_signature_valid(
        token,
        "http://twiliotests.heroku.com:80/validate/voice",
        &owned(&voice),
        "oVb2kXoVy8GEfwBDjR8bk/ZZ6eA="
    ));

    let sms = [
        ("ToState", "CA"),
        ("FromState", "CA"),
        ("AccountSid", "ACba8bc05eacf94afdae398e642c9cc32d"),
        ("SmsMessageSid", "SM2003cbd5e6a3701999aa3e5f20ff2787"),
        ("Body", "Orly"),
        ("From", "+14159354345"),
        ("FromCity", "SAN FRANCISCO"),
        ("SmsStatus", "received"),
        ("FromZip", "94107"),
        ("FromCountry", "US"),
        ("To", "+14158141819"),
        ("ToCity", "SAN FRANCISCO"),
        ("ToZip", "94105"),
        ("ToCountry", "US"),
        ("ApiVersion", "2010-04-01"),
        ("SmsSid", "SM2003cbd5e6a3701999aa3e5f20ff2787"),
    ];
    let url = "http://twiliotests.heroku.com/validate/sms";
    assert_eq!(twilio_signature(token, url, &owned(&sms)), "mxeiv65lEe0b8L6LdVw2jgJi8yw=");

    // Tampering with anything breaks it.
    let mut tampered = owned(&sms);
    tampered[4].1 = "Orlyy".into();
    assert!(!twilio_signature_valid(token, url, &tampered, "mxeiv65lEe0b8L6LdVw2jgJi8yw="));
    assert!(!twilio_signature_valid(
        token,
        "http://twiliotests.heroku.com/validate/smss",
        &owned(&sms),
        "mxeiv65lEe0b8L6LdVw2jgJi8yw="
    ));
    assert!(!twilio_signature_valid("other", url, &owned(&sms), "mxeiv65lEe0b8L6LdVw2jgJi8yw="));
    assert!(!twilio_signature_valid(token, url, &owned(&sms), "not base64!"));
    assert!(!twilio_signature_valid(token, url, &owned(&sms), ""));
}

#[tokio::test]
async fn twilio_signature_is_enforced_when_an_auth_token_is_configured() {
    let f = fixture(|c| {
        c.public_url = Some(PUBLIC.into());
        c.gateways.twilio_auth_token = Some(AUTH_TOKEN.into());
    })
    .await;
    let form = twilio_form("CA500", CALLER, AGENT_NUMBER);
    let good = expected_signature(AUTH_TOKEN, &format!("{PUBLIC}/twilio/voice"), &form);
    let wrong_url = expected_signature(AUTH_TOKEN, &format!("{PUBLIC}/other"), &form);
    let wrong_key = expected_signature("not-the-token", &format!("{PUBLIC}/twilio/voice"), &form);

    for bad in [None, Some(wrong_url.as_str()), Some(wrong_key.as_str()), Some("garbage")] {
        let headers: Vec<(&str, &str)> = bad.map(|s| ("x-twilio-signature", s)).into_iter().collect();
        let (st, _, body) = post_form(&f.s, "/twilio/voice", &form, &headers).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{bad:?}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v["detail"].as_str().unwrap().contains("X-Twilio-Signature"), "{v}");
    }
    // A changed parameter under a signature of the original.
    let mut altered = form.clone();
    altered[2] = ("From", "+19995550000");
    let (st, _, _) = post_form(&f.s, "/twilio/voice", &altered, &[("x-twilio-signature", &good)]).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(call_count(&f.s).await, 0);

    let (st, _, doc) = post_form(&f.s, "/twilio/voice", &form, &[("x-twilio-signature", &good)]).await;
    assert_eq!(st, StatusCode::OK, "{doc}");
    let call_id = parameter(&doc, "callId").expect("callId");
    assert_eq!(call_count(&f.s).await, 1);
    assert_eq!(store(&f.s).await.get_call(&call_id).await.unwrap().gateway_call_id.as_deref(), Some("CA500"));
}

#[tokio::test]
async fn twilio_signature_url_is_rebuilt_from_forwarded_headers_without_public_url() {
    let f = fixture(|c| c.gateways.twilio_auth_token = Some(AUTH_TOKEN.into())).await;
    let form = twilio_form("CA600", CALLER, AGENT_NUMBER);
    let sig = expected_signature(AUTH_TOKEN, "https://edge.example.com/twilio/voice", &form);
    let fwd = [("x-forwarded-proto", "https"), ("x-forwarded-host", "edge.example.com")];
    let (st, _, doc) =
        post_form(&f.s, "/twilio/voice", &form, &[fwd[0], fwd[1], ("x-twilio-signature", &sig)]).await;
    assert_eq!(st, StatusCode::OK, "{doc}");
    assert_eq!(attr_raw(&doc, "Stream", "url").as_deref(), Some("wss://edge.example.com/twilio/media"));
    // The same signature seen at another host is not valid.
    let (st, _, _) = post_form(&f.s, "/twilio/voice", &form, &[("x-twilio-signature", &sig)]).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(call_count(&f.s).await, 1);
}

// ---------------------------------------------------------------------------------------------
// Telnyx TeXML
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn telnyx_texml_streams_bidirectional_rtp_with_parameters() {
    let f = fixture(|c| c.public_url = Some(PUBLIC.into())).await;
    let form = [
        ("CallSid", "v3:telnyx-call-1"),
        ("AccountSid", "telnyx-account"),
        ("From", r#"<&">"#),
        ("To", AGENT_NUMBER),
        ("Direction", "inbound"),
        ("CallStatus", "ringing"),
    ];
    let (st, ct, doc) = post_form(&f.s, "/telnyx/voice", &form, &[]).await;
    assert_eq!(st, StatusCode::OK, "{doc}");
    assert!(ct.starts_with("text/xml"), "{ct}");
    assert!(doc.starts_with(r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream "#), "{doc}");
    assert!(doc.ends_with("</Stream></Connect></Response>"), "{doc}");
    assert_eq!(attr_raw(&doc, "Stream", "url").as_deref(), Some("wss://voice.example.com/telnyx/media"));
    assert_eq!(attr_raw(&doc, "Stream", "bidirectionalMode").as_deref(), Some("rtp"));
    assert_eq!(attr_raw(&doc, "Stream", "bidirectionalCodec").as_deref(), Some("PCMU"));
    assert!(doc.contains(r#"<Parameter name="from" value="&lt;&amp;&quot;&gt;"/>"#), "{doc}");
    assert_eq!(parameter(&doc, "agentId").as_deref(), Some(f.agent_id.as_str()));
    assert_eq!(parameter(&doc, "to").as_deref(), Some(AGENT_NUMBER));
    let token = parameter(&doc, "token").unwrap();
    let call_id = parameter(&doc, "callId").unwrap();
    assert_ringing_call(&f, &call_id, &token, "telnyx", "v3:telnyx-call-1", r#"<&">"#).await;

    let reject = r#"<?xml version="1.0" encoding="UTF-8"?><Response><Reject reason="rejected"/></Response>"#;
    let (st, _, doc) =
        post_form(&f.s, "/telnyx/voice", &[("CallSid", "v3:x"), ("To", UNKNOWN_NUMBER)], &[]).await;
    assert_eq!((st, doc.as_str()), (StatusCode::OK, reject));
    let (st, _, _) = post_form(&f.s, "/telnyx/voice", &[("To", AGENT_NUMBER)], &[]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(call_count(&f.s).await, 1);

    // A TeXML application set to fetch with GET sends the same fields in the query.
    let q = "/telnyx/voice?CallSid=v3%3Aget-1&From=%2B12125550123&To=%2B14155550100";
    let (st, _, doc) = get_path(&f.s, q, &[]).await;
    assert_eq!(st, StatusCode::OK, "{doc}");
    let call_id = parameter(&doc, "callId").expect("callId");
    let call = store(&f.s).await.get_call(&call_id).await.unwrap();
    assert_eq!(
        (call.gateway_call_id.as_deref(), call.from_number.as_deref()),
        (Some("v3:get-1"), Some(CALLER))
    );
}

// ---------------------------------------------------------------------------------------------
// Vonage NCCO
// ---------------------------------------------------------------------------------------------

fn check_ncco(ncco: &Value, f: &Fixture, uuid: &str, from_raw: &str) -> (String, String) {
    let actions = ncco.as_array().unwrap_or_else(|| panic!("NCCO is an array: {ncco}"));
    assert_eq!(actions.len(), 1, "{ncco}");
    let connect = &actions[0];
    assert_eq!(connect["action"], "connect");
    assert_eq!(connect["from"], from_raw);
    let endpoints = connect["endpoint"].as_array().unwrap();
    assert_eq!(endpoints.len(), 1);
    let ep = &endpoints[0];
    assert_eq!(ep["type"], "websocket");
    assert_eq!(ep["uri"], "wss://voice.example.com/vonage/media");
    assert_eq!(ep["content-type"], "audio/l16;rate=16000");
    let h = &ep["headers"];
    assert_eq!(h["agentId"], f.agent_id.as_str());
    assert_eq!(h["from"], CALLER);
    assert_eq!(h["to"], AGENT_NUMBER);
    assert_eq!(h["uuid"], uuid);
    (h["callId"].as_str().unwrap().to_string(), h["token"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn vonage_answer_by_get_and_post_connects_a_websocket_with_headers() {
    let f = fixture(|c| c.public_url = Some(PUBLIC.into())).await;
    // GET with Vonage's bare-digit numbers.
    let q = "/vonage/answer?to=14155550100&from=12125550123&uuid=63f61863-4a51-4f6b-86e1-46edebio0391&conversation_uuid=CON-f972836a";
    let (st, ct, body) = get_path(&f.s, q, &[]).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(ct.starts_with("application/json"), "{ct}");
    let ncco: Value = serde_json::from_str(&body).unwrap();
    let (call_id, token) = check_ncco(&ncco, &f, "63f61863-4a51-4f6b-86e1-46edebio0391", "12125550123");
    assert_ringing_call(&f, &call_id, &token, "vonage", "63f61863-4a51-4f6b-86e1-46edebio0391", CALLER).await;

    // POST with a JSON body.
    let body =
        json!({ "to": AGENT_NUMBER, "from": CALLER, "uuid": "uuid-post-1", "conversation_uuid": "CON-2" });
    let resp = f.s.client.post(format!("{}/vonage/answer", f.s.base)).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let ncco: Value = resp.json().await.unwrap();
    let (call_id, token) = check_ncco(&ncco, &f, "uuid-post-1", CALLER);
    assert_ringing_call(&f, &call_id, &token, "vonage", "uuid-post-1", CALLER).await;

    // Unknown number and number without agent: a spoken refusal, no record.
    for to in [UNKNOWN_NUMBER, IDLE_NUMBER] {
        let q = format!("/vonage/answer?to={}&from=12125550123&uuid=u-x", &to[1..]);
        let (st, _, body) = get_path(&f.s, &q, &[]).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v, json!([{ "action": "talk", "text": "This number is not in service." }]));
    }
    let (st, _, _) = get_path(&f.s, "/vonage/answer?from=1&uuid=u", &[]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let resp = f.s.client.post(format!("{}/vonage/answer", f.s.base)).body("{nope").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(call_count(&f.s).await, 2);
}

// ---------------------------------------------------------------------------------------------
// Plivo
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn plivo_answer_streams_with_extra_headers() {
    let f = fixture(|c| c.public_url = Some(PUBLIC.into())).await;
    let form = [
        ("CallUUID", "2c1e3a7e-0000-4000-8000-00000000plivo"),
        ("From", "12125550123"),
        ("To", "14155550100"),
        ("Direction", "inbound"),
        ("CallStatus", "ringing"),
    ];
    let (st, ct, doc) = post_form(&f.s, "/plivo/answer", &form, &[]).await;
    assert_eq!(st, StatusCode::OK, "{doc}");
    assert!(ct.starts_with("text/xml"), "{ct}");
    let extra = attr_raw(&doc, "Stream", "extraHeaders").expect("extraHeaders");
    let pairs: Vec<(&str, &str)> = extra.split(',').map(|kv| kv.split_once('=').unwrap()).collect();
    assert_eq!(pairs.iter().map(|p| p.0).collect::<Vec<_>>(), ["agentId", "token", "callId"], "{extra}");
    assert_eq!(pairs[0].1, f.agent_id);
    let expected = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><Response><Stream bidirectional="true" keepCallAlive="true" contentType="audio/x-mulaw;rate=8000" extraHeaders="{extra}">wss://voice.example.com/plivo/media</Stream></Response>"#
    );
    assert_eq!(doc, expected);
    assert_ringing_call(&f, pairs[2].1, pairs[1].1, "plivo", "2c1e3a7e-0000-4000-8000-00000000plivo", CALLER)
        .await;

    let hangup = r#"<?xml version="1.0" encoding="UTF-8"?><Response><Hangup/></Response>"#;
    for to in ["14155550142", IDLE_NUMBER] {
        let (st, _, doc) =
            post_form(&f.s, "/plivo/answer", &[("CallUUID", "u"), ("From", "1"), ("To", to)], &[]).await;
        assert_eq!((st, doc.as_str()), (StatusCode::OK, hangup));
    }
    let (st, _, _) = post_form(&f.s, "/plivo/answer", &[("To", "14155550100")], &[]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(call_count(&f.s).await, 1);
}

#[tokio::test]
async fn plivo_transfer_dials_an_e164_number_only() {
    let s = TestServer::start().await;
    let dial = r#"<?xml version="1.0" encoding="UTF-8"?><Response><Dial><Number>+14155550123</Number></Dial></Response>"#;
    for q in ["to=%2B14155550123", "to=+14155550123"] {
        let (st, ct, doc) = get_path(&s, &format!("/plivo/transfer?{q}"), &[]).await;
        assert_eq!(st, StatusCode::OK, "{q}: {doc}");
        assert!(ct.starts_with("text/xml"), "{ct}");
        assert_eq!(doc, dial);
    }
    for q in ["", "to=", "to=14155550123", "to=%2B1415<x>", "to=%2B123"] {
        let (st, _, body) = get_path(&s, &format!("/plivo/transfer?{q}"), &[]).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v["detail"].as_str().unwrap().starts_with("to:"), "{v}");
    }
}
