//! The agents API over real HTTP against the real server and a fresh SQLite file:
//! lifecycle with every field, defaults, range edges, enums, PATCH semantics, pagination, errors.

mod common;

use common::{assert_detail, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Every seed field set to a non-default value.
fn full_agent() -> Value {
    json!({
        "name": "Front desk",
        "description": "Answers the main line",
        "voiceMode": "hosted",
        "enableMessaging": false,
        "modelTier": "max",
        "systemPrompt": "You are {{business}}'s receptionist.",
        "beginMessage": "Hello, thanks for calling!",
        "voice": "espeak-en-gb",
        "transferNumber": "+442071838750",
        "voicemailMessage": "Sorry we missed you.",
        "sttMode": "accurate",
        "ambientSound": "coffee-shop",
        "denoisingMode": "noise-and-background-speech-cancellation",
        "maxSilenceMs": 30000,
        "voiceSpeed": 1.25,
        "interruptionSensitivity": 0.35,
        "enableBackchannel": false,
        "language": "en-GB"
    })
}

#[tokio::test]
async fn full_lifecycle_with_every_field() {
    let s = TestServer::start().await;
    let body = full_agent();
    let created = s.agent(body.clone()).await;
    for (k, v) in body.as_object().unwrap() {
        assert_eq!(&created[k], v, "field {k}");
    }
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("agt_"), "{id}");
    chrono::DateTime::parse_from_rfc3339(created["createdAt"].as_str().unwrap()).expect("RFC 3339");
    assert_eq!(created["numbers"], json!([]));

    // Read back: identical.
    let (st, got) = s.get(&format!("/v1/agents/{id}")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(got, created);

    // Listed.
    let (st, list) = s.get("/v1/agents").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list["total"], 1);
    assert_eq!(list["hasMore"], false);
    assert_eq!(list["data"][0], created);

    // Delete, then gone.
    let (st, del) = s.delete(&format!("/v1/agents/{id}")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(del, json!({"id": id, "deleted": true}));
    assert_detail(&s.get(&format!("/v1/agents/{id}")).await, 404, id);
    assert_detail(&s.delete(&format!("/v1/agents/{id}")).await, 404, "not found");
    assert_eq!(s.get("/v1/agents").await.1["total"], 0);
}

#[tokio::test]
async fn defaults_of_every_field() {
    let s = TestServer::start().await;
    let a = s.agent(json!({"name": "Minimal"})).await;
    let (_, voices) = s.get("/v1/agents/voices").await;
    let first_voice = voices["data"][0]["voice_id"].clone();
    let expected = json!({
        "description": null, "voiceMode": "webhook", "enableMessaging": true, "modelTier": "balanced",
        "systemPrompt": null, "beginMessage": null, "voice": first_voice, "transferNumber": null,
        "voicemailMessage": null, "sttMode": "fast", "ambientSound": "none",
        "denoisingMode": "noise-cancellation", "maxSilenceMs": 600000, "voiceSpeed": 1.0,
        "interruptionSensitivity": 0.8, "enableBackchannel": true, "language": "en-US", "numbers": []
    });
    for (k, v) in expected.as_object().unwrap() {
        assert_eq!(&a[k], v, "default of {k}");
    }
    // null on create means "take the default", like absent.
    let b = s.agent(json!({"name": "Nulls", "voiceSpeed": null, "sttMode": null, "voice": null})).await;
    assert_eq!((b["voiceSpeed"].clone(), b["sttMode"].clone()), (json!(1.0), json!("fast")));
    assert_eq!(b["voice"], first_voice);
}

#[tokio::test]
async fn range_edges_in_and_just_out() {
    let s = TestServer::start().await;
    let cases: &[(&str, Value, bool)] = &[
        ("maxSilenceMs", json!(10000), true),
        ("maxSilenceMs", json!(9999), false),
        ("maxSilenceMs", json!(3600000), true),
        ("maxSilenceMs", json!(3600001), false),
        ("voiceSpeed", json!(0.5), true),
        ("voiceSpeed", json!(0.499), false),
        ("voiceSpeed", json!(2.0), true),
        ("voiceSpeed", json!(2.001), false),
        ("interruptionSensitivity", json!(0.0), true),
        ("interruptionSensitivity", json!(-0.001), false),
        ("interruptionSensitivity", json!(1.0), true),
        ("interruptionSensitivity", json!(1.001), false),
        ("name", json!("x".repeat(200)), true),
        ("name", json!("x".repeat(201)), false),
        ("name", json!(""), false),
        ("description", json!("d".repeat(2000)), true),
        ("description", json!("d".repeat(2001)), false),
        ("systemPrompt", json!("p".repeat(32000)), true),
        ("systemPrompt", json!("p".repeat(32001)), false),
        ("beginMessage", json!("b".repeat(2000)), true),
        ("beginMessage", json!("b".repeat(2001)), false),
        ("voicemailMessage", json!("v".repeat(2000)), true),
        ("voicemailMessage", json!("v".repeat(2001)), false),
        ("transferNumber", json!("+12345678"), true),
        ("transferNumber", json!("+123456789012345"), true),
        ("transferNumber", json!("+1234567"), false),
        ("transferNumber", json!("+1234567890123456"), false),
        ("transferNumber", json!("4155550123"), false),
    ];
    for (field, value, ok) in cases {
        let mut body = json!({"name": "Edge"});
        body[*field] = value.clone();
        let got = s.post("/v1/agents", body).await;
        if *ok {
            assert_eq!(got.0, StatusCode::CREATED, "{field}={value}: {}", got.1);
            assert_eq!(&got.1[*field], value, "{field} stored as given");
        } else {
            assert_detail(&got, 422, field);
        }
    }
    // Range messages say what is allowed.
    assert_detail(
        &s.post("/v1/agents", json!({"name": "E", "voiceSpeed": 3})).await,
        422,
        "between 0.5 and 2.0",
    );
    assert_detail(
        &s.post("/v1/agents", json!({"name": "E", "maxSilenceMs": 5})).await,
        422,
        "10000 and 3600000",
    );
}

#[tokio::test]
async fn every_enum_value_and_unknown_ones() {
    let s = TestServer::start().await;
    let enums: &[(&str, &[&str])] = &[
        ("voiceMode", &["webhook", "hosted"]),
        ("modelTier", &["turbo", "balanced", "max"]),
        ("sttMode", &["fast", "accurate"]),
        ("ambientSound", &["none", "office", "coffee-shop", "outdoor"]),
        ("denoisingMode", &["noise-cancellation", "noise-and-background-speech-cancellation"]),
    ];
    for (field, values) in enums {
        for v in *values {
            let mut body = json!({"name": "Enum"});
            body[*field] = json!(v);
            let (st, a) = s.post("/v1/agents", body).await;
            assert_eq!(st, StatusCode::CREATED, "{field}={v}: {a}");
            assert_eq!(a[*field], json!(v));
        }
        let mut body = json!({"name": "Enum"});
        body[*field] = json!("loud");
        let got = s.post("/v1/agents", body).await;
        assert_detail(&got, 422, field);
        // The detail lists what is allowed.
        assert_detail(&got, 422, values[0]);
    }
    // Languages: every one accepted; a near miss refused with the list.
    for lang in switchboard::agent::LANGUAGES {
        let (st, a) = s.post("/v1/agents", json!({"name": "L", "language": lang})).await;
        assert_eq!(st, StatusCode::CREATED, "{lang}: {a}");
    }
    let got = s.post("/v1/agents", json!({"name": "L", "language": "en-UK"})).await;
    assert_detail(&got, 422, "language");
    assert_detail(&got, 422, "en-GB");
    // Voices come from the catalogue.
    let (_, voices) = s.get("/v1/agents/voices").await;
    for v in voices["data"].as_array().unwrap() {
        let id = v["voice_id"].as_str().unwrap();
        let (st, a) = s.post("/v1/agents", json!({"name": "V", "voice": id})).await;
        assert_eq!(st, StatusCode::CREATED, "{id}: {a}");
    }
    assert_detail(&s.post("/v1/agents", json!({"name": "V", "voice": "Polly.Amy"})).await, 422, "voice");
}

#[tokio::test]
async fn wrong_types_malformed_json_and_missing_fields() {
    let s = TestServer::start().await;
    let wrong: &[(&str, Value)] = &[
        ("name", json!(5)),
        ("voiceSpeed", json!("fast")),
        ("maxSilenceMs", json!(1.5)),
        ("enableMessaging", json!("yes")),
        ("interruptionSensitivity", json!([0.5])),
        ("language", json!(1)),
    ];
    for (field, value) in wrong {
        let mut body = json!({"name": "T"});
        body[*field] = value.clone();
        assert_detail(&s.post("/v1/agents", body).await, 422, field);
    }
    assert_detail(&s.post("/v1/agents", json!({"description": "no name"})).await, 422, "name");
    assert_detail(&s.post("/v1/agents", json!([1, 2])).await, 422, "JSON object");
    assert_detail(&s.call_raw(Method::POST, "/v1/agents", "{\"name\": \"x\",").await, 400, "malformed JSON");
    assert_detail(&s.call_raw(Method::POST, "/v1/agents", "").await, 400, "empty");
    // Unknown fields are ignored; server-made fields cannot be set.
    let a = s
        .agent(json!({"name": "U", "colour": "blue", "id": "agt_mine", "createdAt": "1999-01-01T00:00:00Z"}))
        .await;
    assert_ne!(a["id"], "agt_mine");
    assert!(a.get("colour").is_none());
    assert_ne!(a["createdAt"], "1999-01-01T00:00:00Z");
    // Nothing half-written: only the one good agent exists.
    assert_eq!(s.get("/v1/agents").await.1["total"], 1);
}

#[tokio::test]
async fn patch_absent_keeps_null_clears_bad_leaves_unchanged() {
    let s = TestServer::start().await;
    let a = s.agent(full_agent()).await;
    let path = format!("/v1/agents/{}", a["id"].as_str().unwrap());

    // Absent fields stay; present ones change.
    let (st, b) = s.patch(&path, json!({"voiceSpeed": 0.75, "sttMode": "fast"})).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!((b["voiceSpeed"].clone(), b["sttMode"].clone()), (json!(0.75), json!("fast")));
    for k in ["name", "description", "systemPrompt", "voice", "language", "maxSilenceMs", "createdAt", "id"] {
        assert_eq!(b[k], a[k], "{k} unchanged");
    }

    // null clears nullable fields; "" clears transferNumber and voicemailMessage.
    let (st, c) = s
        .patch(
            &path,
            json!({"description": null, "systemPrompt": null, "beginMessage": null,
                              "transferNumber": "", "voicemailMessage": ""}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{c}");
    for k in ["description", "systemPrompt", "beginMessage", "transferNumber", "voicemailMessage"] {
        assert_eq!(c[k], Value::Null, "{k} cleared");
    }
    let (_, c2) = s.patch(&path, json!({"transferNumber": null})).await;
    assert_eq!(c2["transferNumber"], Value::Null);

    // null on a non-nullable field, a bad value, or a bad type: 422 and nothing changes,
    // even for the valid fields of the same request.
    let before = s.get(&path).await.1;
    assert_detail(&s.patch(&path, json!({"name": "New", "voiceSpeed": null})).await, 422, "voiceSpeed");
    assert_detail(&s.patch(&path, json!({"name": "New", "maxSilenceMs": 1})).await, 422, "maxSilenceMs");
    assert_detail(
        &s.patch(&path, json!({"name": "New", "ambientSound": "jungle"})).await,
        422,
        "ambientSound",
    );
    assert_detail(&s.patch(&path, json!({"name": null})).await, 422, "name");
    assert_detail(&s.call_raw(Method::PATCH, &path, "{nope").await, 400, "malformed JSON");
    assert_eq!(s.get(&path).await.1, before);

    // Empty patch is a no-op; unknown id is 404.
    assert_eq!(s.patch(&path, json!({})).await.1, before);
    assert_detail(&s.patch("/v1/agents/agt_missing", json!({"name": "x"})).await, 404, "agt_missing");
}

#[tokio::test]
async fn concurrent_patches_all_apply() {
    let s = TestServer::start().await;
    let a = s.agent(json!({"name": "Race"})).await;
    let path = format!("/v1/agents/{}", a["id"].as_str().unwrap());
    let fields = ["description", "systemPrompt", "beginMessage", "voicemailMessage"];
    let mut tasks = Vec::new();
    for f in fields {
        let (client, url, key, path) = (s.client.clone(), s.base.clone(), s.key.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let resp = client
                .patch(format!("{url}{path}"))
                .bearer_auth(key)
                .json(&json!({ f: f }))
                .send()
                .await
                .unwrap();
            (resp.status(), resp.text().await.unwrap())
        }));
    }
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let got = s.get(&path).await.1;
    for f in fields {
        assert_eq!(got[f], json!(f), "patch of {f} was lost");
    }
}

#[tokio::test]
async fn list_pagination_envelope() {
    let s = TestServer::start().await;
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(s.agent(json!({"name": format!("A{i:02}")})).await["id"].as_str().unwrap().to_string());
    }
    let (st, p1) = s.get("/v1/agents").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        (p1["data"].as_array().unwrap().len(), p1["hasMore"].clone(), p1["total"].clone()),
        (20, json!(true), json!(25))
    );
    let (_, p2) = s.get("/v1/agents?limit=10&offset=20").await;
    assert_eq!((p2["data"].as_array().unwrap().len(), p2["hasMore"].clone()), (5, json!(false)));
    let (_, p3) = s.get("/v1/agents?limit=100&offset=25").await;
    assert_eq!(
        (p3["data"].as_array().unwrap().len(), p3["hasMore"].clone(), p3["total"].clone()),
        (0, json!(false), json!(25))
    );
    // Pages partition the set: newest first, no repeats.
    let mut seen: Vec<String> = Vec::new();
    for off in (0..25).step_by(7) {
        let (_, p) = s.get(&format!("/v1/agents?limit=7&offset={off}")).await;
        seen.extend(p["data"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_string()));
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);
    for bad in ["limit=0", "limit=101", "limit=abc", "offset=-1"] {
        assert_detail(&s.get(&format!("/v1/agents?{bad}")).await, 422, bad.split('=').next().unwrap());
    }
    assert_detail(&s.get("/v1/agents?limit=1.5").await, 422, "limit");
}

#[tokio::test]
async fn voices_catalogue_shape() {
    let s = TestServer::start().await;
    let (st, v) = s.get("/v1/agents/voices").await;
    assert_eq!(st, StatusCode::OK);
    let data = v["data"].as_array().unwrap();
    assert!(data.len() > 10, "{v}");
    for voice in data {
        for k in ["voice_id", "voice_name", "provider", "gender", "accent", "language"] {
            assert!(voice[k].is_string(), "{k} missing in {voice}");
        }
        assert!(switchboard::agent::LANGUAGES.contains(&voice["language"].as_str().unwrap()));
    }
    let has_piper = common::models_dir().join("tts/en_US-joe-medium.onnx").is_file();
    assert_eq!(data.iter().any(|v| v["provider"] == "piper"), has_piper);
    assert_detail(&s.call_as(None, Method::GET, "/v1/agents/voices", None).await, 401, "Authorization");
}

#[tokio::test]
async fn auth_is_required_everywhere_under_v1() {
    let s = TestServer::start().await;
    let a = s.agent(json!({"name": "Auth"})).await;
    let id = a["id"].as_str().unwrap();
    let routes = [
        (Method::POST, "/v1/agents".to_string()),
        (Method::GET, "/v1/agents".to_string()),
        (Method::GET, format!("/v1/agents/{id}")),
        (Method::PATCH, format!("/v1/agents/{id}")),
        (Method::DELETE, format!("/v1/agents/{id}")),
        (Method::POST, format!("/v1/agents/{id}/numbers")),
        (Method::DELETE, format!("/v1/agents/{id}/numbers/num_x")),
    ];
    for (m, p) in &routes {
        assert_detail(&s.call_as(None, m.clone(), p, Some(json!({}))).await, 401, "Authorization");
        assert_detail(&s.call_as(Some("sb_live_wrong"), m.clone(), p, Some(json!({}))).await, 401, "invalid");
    }
    // A malformed header scheme is refused too.
    let resp = s
        .client
        .get(format!("{}/v1/agents", s.base))
        .header("authorization", s.key.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // The agent survived all of that.
    assert_eq!(s.get(&format!("/v1/agents/{id}")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn languages_say_what_the_installed_engines_cover() {
    let s = TestServer::start().await;
    let (status, body) = s.get("/v1/agents/languages").await;
    assert_eq!(status, 200);
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), switchboard::agent::LANGUAGES.len(), "every supported language is listed");
    let lang = |tag: &str| data.iter().find(|l| l["language"] == tag).unwrap().clone();
    let en = lang("en-US");
    assert_eq!(en["speechToText"], "whisper-tiny.en");
    assert_eq!(en["callable"], true);
    assert!(en["voices"].as_array().unwrap().iter().any(|v| v == "espeak-en-us"));
    let de = lang("de-DE");
    assert!(!de["voices"].as_array().unwrap().is_empty(), "espeak-ng speaks German");
    if common::models_dir().join("whisper-base/model.bin").is_file() {
        assert_eq!(de["speechToText"], "whisper-base", "base hears German");
        assert_eq!(de["callable"], true);
    } else {
        assert!(de["speechToText"].is_null(), "tiny.en does not understand German");
        assert_eq!(de["callable"], false);
    }
    // Cantonese: espeak-ng speaks it, but neither tiny.en nor base (no <|yue|> before large-v3) hears it.
    let yue = lang("yue-CN");
    assert!(yue["speechToText"].is_null(), "{yue}");
    assert_eq!(yue["callable"], false);
    assert!(!yue["voices"].as_array().unwrap().is_empty(), "but espeak-ng speaks it");
    let (status, _) = s.call_as(None, Method::GET, "/v1/agents/languages", None).await;
    assert_eq!(status, 401);
}
