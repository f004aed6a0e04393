//! `/v1/numbers` and the attach/detach endpoints of `/v1/agents/{id}/numbers`, over real HTTP.

mod common;

use std::collections::HashSet;

use common::{assert_detail, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// `total` of `GET /v1/numbers`.
async fn total(s: &TestServer) -> i64 {
    let (st, v) = s.get("/v1/numbers").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["total"].as_i64().unwrap_or_else(|| panic!("no total in {v}"))
}

/// The `numbers` array of an agent, as returned by `GET /v1/agents/{id}`.
async fn agent_numbers(s: &TestServer, agent_id: &str) -> Vec<Value> {
    let (st, v) = s.get(&format!("/v1/agents/{agent_id}")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["numbers"].as_array().unwrap_or_else(|| panic!("no numbers array in {v}")).clone()
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}")).to_string()
}

#[tokio::test]
async fn register_answers_the_full_number_with_a_country() {
    let s = TestServer::start().await;
    let (st, v) = s.post("/v1/numbers", json!({ "phoneNumber": "+14155550123" })).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let obj = v.as_object().unwrap();
    for field in ["id", "phoneNumber", "country", "status", "agentId", "createdAt", "type"] {
        assert!(obj.contains_key(field), "{field} missing in {v}");
    }
    assert!(!id_of(&v).is_empty());
    assert_eq!(v["phoneNumber"], "+14155550123");
    assert_eq!(v["country"], "US");
    assert_eq!(v["status"], "active");
    assert_eq!(v["agentId"], Value::Null);
    assert_eq!(v["type"], "voice");
    let created = v["createdAt"].as_str().expect("createdAt is a string");
    chrono::DateTime::parse_from_rfc3339(created).unwrap_or_else(|e| panic!("createdAt {created:?}: {e}"));

    let gb = s.number("+442071838750").await;
    assert_eq!(gb["country"], "GB");
    // An explicit country wins over the calling code, and is upper-cased.
    let (st, v) = s.post("/v1/numbers", json!({ "phoneNumber": "+33612345678", "country": "gb" })).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["country"], "GB");

    for bad in ["GBR", "g", "1A", ""] {
        let got = s.post("/v1/numbers", json!({ "phoneNumber": "+4915112345678", "country": bad })).await;
        assert_detail(&got, 422, "country");
    }
    assert_eq!(total(&s).await, 3);
}

#[tokio::test]
async fn phone_numbers_must_be_e164() {
    let s = TestServer::start().await;
    let shortest = s.number("+12345678").await;
    assert_eq!(shortest["phoneNumber"], "+12345678");

    for bad in ["+1234567", "+1234567890123456", "14155550123", "+1415555012a"] {
        let got = s.post("/v1/numbers", json!({ "phoneNumber": bad })).await;
        assert_detail(&got, 422, "phoneNumber");
    }
    assert_detail(&s.post("/v1/numbers", json!({ "country": "US" })).await, 422, "phoneNumber");
    let got = s.call_raw(Method::POST, "/v1/numbers", "{\"phoneNumber\": ").await;
    assert_eq!(got.0, StatusCode::BAD_REQUEST, "{}", got.1);
    assert!(got.1["detail"].is_string(), "{}", got.1);
    // None of the refused requests left a row.
    assert_eq!(total(&s).await, 1);
}

#[tokio::test]
async fn a_phone_number_registers_once() {
    let s = TestServer::start().await;
    let first = s.number("+14155550123").await;
    let got = s.post("/v1/numbers", json!({ "phoneNumber": "+14155550123" })).await;
    assert_detail(&got, 409, "phoneNumber");
    assert_eq!(total(&s).await, 1);
    let (st, v) = s.get("/v1/numbers").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["data"][0]["id"], first["id"]);
}

#[tokio::test]
async fn register_with_an_agent_attaches_it() {
    let s = TestServer::start().await;
    let agent = s.agent(json!({ "name": "Front desk" })).await;
    let agent_id = id_of(&agent);
    assert_eq!(agent["numbers"], json!([]));

    let (st, v) = s.post("/v1/numbers", json!({ "phoneNumber": "+14155550123", "agentId": agent_id })).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["agentId"], agent_id.as_str());
    let numbers = agent_numbers(&s, &agent_id).await;
    assert_eq!(
        numbers,
        vec![json!({ "id": v["id"], "phoneNumber": "+14155550123", "status": "active", "type": "voice" })]
    );

    let got = s.post("/v1/numbers", json!({ "phoneNumber": "+14155550199", "agentId": "agt_nope" })).await;
    assert_detail(&got, 404, "agt_nope");
    assert_eq!(total(&s).await, 1, "a refused registration leaves no row");
}

#[tokio::test]
async fn get_and_list_with_pagination() {
    let s = TestServer::start().await;
    let mut ids = HashSet::new();
    for phone in ["+14155550101", "+14155550102", "+14155550103"] {
        ids.insert(id_of(&s.number(phone).await));
    }
    let some = ids.iter().next().unwrap().clone();
    let (st, v) = s.get(&format!("/v1/numbers/{some}")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["id"], some.as_str());
    assert_eq!(v["status"], "active");
    assert_detail(&s.get("/v1/numbers/num_nope").await, 404, "num_nope");

    let (st, all) = s.get("/v1/numbers").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        (all["data"].as_array().unwrap().len(), all["total"].as_i64(), &all["hasMore"]),
        (3, Some(3), &json!(false))
    );

    let (st, p1) = s.get("/v1/numbers?limit=2").await;
    assert_eq!(st, StatusCode::OK, "{p1}");
    assert_eq!(p1["data"].as_array().unwrap().len(), 2);
    assert_eq!((p1["total"].as_i64(), &p1["hasMore"]), (Some(3), &json!(true)));
    let (st, p2) = s.get("/v1/numbers?limit=2&offset=2").await;
    assert_eq!(st, StatusCode::OK, "{p2}");
    assert_eq!(p2["data"].as_array().unwrap().len(), 1);
    assert_eq!((p2["total"].as_i64(), &p2["hasMore"]), (Some(3), &json!(false)));
    let paged: HashSet<String> =
        p1["data"].as_array().unwrap().iter().chain(p2["data"].as_array().unwrap()).map(id_of).collect();
    assert_eq!(paged, ids, "two pages cover every number exactly once");
    let (st, past) = s.get("/v1/numbers?offset=10").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!((past["data"].as_array().unwrap().len(), past["total"].as_i64()), (0, Some(3)));

    for bad in ["0", "101", "x"] {
        assert_detail(&s.get(&format!("/v1/numbers?limit={bad}")).await, 422, "limit");
    }
    assert_detail(&s.get("/v1/numbers?offset=-1").await, 422, "offset");
}

#[tokio::test]
async fn patch_changes_the_present_fields_only() {
    let s = TestServer::start().await;
    let agent_id = id_of(&s.agent(json!({ "name": "Sales" })).await);
    let n = s.number("+14155550123").await;
    let id = id_of(&n);
    let other = s.number("+14155550124").await;
    let path = format!("/v1/numbers/{id}");

    let (st, v) = s.patch(&path, json!({ "phoneNumber": "+442071838750" })).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["phoneNumber"], "+442071838750");
    assert_eq!(v["country"], "US", "absent country is left as it was");
    assert_eq!((&v["id"], &v["createdAt"]), (&n["id"], &n["createdAt"]));
    assert_eq!(s.get(&path).await.1["phoneNumber"], "+442071838750");

    assert_detail(&s.patch(&path, json!({ "phoneNumber": null })).await, 422, "phoneNumber");
    assert_detail(&s.patch(&path, json!({ "phoneNumber": "0800" })).await, 422, "phoneNumber");
    assert_detail(&s.patch(&path, json!({ "country": "USA" })).await, 422, "country");
    assert_detail(&s.patch(&path, json!({ "phoneNumber": other["phoneNumber"] })).await, 409, "phoneNumber");
    assert_detail(&s.patch(&path, json!({ "agentId": "agt_nope" })).await, 404, "agt_nope");
    assert_detail(&s.patch("/v1/numbers/num_nope", json!({ "country": "US" })).await, 404, "num_nope");
    let (_, v) = s.get(&path).await;
    assert_eq!(
        (&v["phoneNumber"], &v["country"], &v["agentId"]),
        (&json!("+442071838750"), &json!("US"), &Value::Null)
    );

    let (st, v) = s.patch(&path, json!({ "agentId": agent_id })).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["agentId"], agent_id.as_str());
    assert_eq!(agent_numbers(&s, &agent_id).await.len(), 1);

    let (st, v) = s.patch(&path, json!({ "country": null })).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["country"], Value::Null);
    assert_eq!(v["agentId"], agent_id.as_str(), "absent agentId is left as it was");

    let (st, v) = s.patch(&path, json!({ "agentId": null, "country": "gb" })).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!((&v["agentId"], &v["country"]), (&Value::Null, &json!("GB")));
    assert!(agent_numbers(&s, &agent_id).await.is_empty());
    let (_, v) = s.get(&path).await;
    assert_eq!(v["agentId"], Value::Null);
}

#[tokio::test]
async fn delete_removes_the_number() {
    let s = TestServer::start().await;
    let agent_id = id_of(&s.agent(json!({ "name": "Support" })).await);
    let (st, n) = s.post("/v1/numbers", json!({ "phoneNumber": "+14155550123", "agentId": agent_id })).await;
    assert_eq!(st, StatusCode::CREATED, "{n}");
    let keep = s.number("+14155550124").await;
    let id = id_of(&n);

    let (st, v) = s.delete(&format!("/v1/numbers/{id}")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, json!({ "id": id, "deleted": true }));
    assert_detail(&s.get(&format!("/v1/numbers/{id}")).await, 404, &id);
    assert_detail(&s.delete(&format!("/v1/numbers/{id}")).await, 404, &id);
    assert!(agent_numbers(&s, &agent_id).await.is_empty());
    assert_eq!(total(&s).await, 1);
    assert_eq!(s.get(&format!("/v1/numbers/{}", id_of(&keep))).await.0, StatusCode::OK);
    // The freed phone number can be registered again.
    s.number("+14155550123").await;
}

#[tokio::test]
async fn attach_and_detach() {
    let s = TestServer::start().await;
    let a = id_of(&s.agent(json!({ "name": "A" })).await);
    let b = id_of(&s.agent(json!({ "name": "B" })).await);
    let n = id_of(&s.number("+14155550123").await);
    let attach = |agent: &str| format!("/v1/agents/{agent}/numbers");

    let expected = json!({
        "agentId": a,
        "number": { "id": n, "phoneNumber": "+14155550123", "status": "active", "type": "voice" },
    });
    let (st, v) = s.post(&attach(&a), json!({ "numberId": n })).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, expected);
    assert_eq!(agent_numbers(&s, &a).await, vec![expected["number"].clone()]);
    assert_eq!(s.get(&format!("/v1/numbers/{n}")).await.1["agentId"], a.as_str());

    // Idempotent on the same agent.
    let (st, v) = s.post(&attach(&a), json!({ "numberId": n })).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, expected);
    assert_eq!(agent_numbers(&s, &a).await.len(), 1);

    // Held by A: B cannot take it.
    assert_detail(&s.post(&attach(&b), json!({ "numberId": n })).await, 409, &n);
    assert!(agent_numbers(&s, &b).await.is_empty());
    assert_eq!(s.get(&format!("/v1/numbers/{n}")).await.1["agentId"], a.as_str());

    assert_detail(&s.post(&attach("agt_nope"), json!({ "numberId": n })).await, 404, "agt_nope");
    assert_detail(&s.post(&attach(&b), json!({ "numberId": "num_nope" })).await, 404, "num_nope");
    assert_detail(&s.post(&attach(&b), json!({})).await, 422, "numberId");
    assert_eq!(s.call_raw(Method::POST, &attach(&b), "{\"numberId\"").await.0, StatusCode::BAD_REQUEST);

    // Detaching from the wrong agent, or an unknown number, is a 404 and changes nothing.
    assert_eq!(s.delete(&format!("/v1/agents/{b}/numbers/{n}")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(s.delete(&format!("/v1/agents/{a}/numbers/num_nope")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(s.delete(&format!("/v1/agents/agt_nope/numbers/{n}")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(agent_numbers(&s, &a).await.len(), 1);

    let (st, v) = s.delete(&format!("/v1/agents/{a}/numbers/{n}")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["agentId"], a.as_str());
    assert_eq!(v["number"]["id"], n.as_str());
    assert!(agent_numbers(&s, &a).await.is_empty());
    assert_eq!(s.get(&format!("/v1/numbers/{n}")).await.1["agentId"], Value::Null);
    // Detached: detaching again is a 404, and B may now take it.
    assert_eq!(s.delete(&format!("/v1/agents/{a}/numbers/{n}")).await.0, StatusCode::NOT_FOUND);
    let (st, v) = s.post(&attach(&b), json!({ "numberId": n })).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(agent_numbers(&s, &b).await.len(), 1);
}

#[tokio::test]
async fn deleting_an_agent_detaches_its_numbers() {
    let s = TestServer::start().await;
    let a = id_of(&s.agent(json!({ "name": "Doomed" })).await);
    let n1 = id_of(&s.number("+14155550123").await);
    let n2 = id_of(&s.number("+14155550124").await);
    for n in [&n1, &n2] {
        let (st, v) = s.post(&format!("/v1/agents/{a}/numbers"), json!({ "numberId": n })).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    assert_eq!(agent_numbers(&s, &a).await.len(), 2);

    let (st, v) = s.delete(&format!("/v1/agents/{a}")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(s.get(&format!("/v1/agents/{a}")).await.0, StatusCode::NOT_FOUND);
    for n in [&n1, &n2] {
        let (st, v) = s.get(&format!("/v1/numbers/{n}")).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["agentId"], Value::Null);
    }
    assert_eq!(total(&s).await, 2);
}

#[tokio::test]
async fn every_numbers_route_needs_a_valid_key() {
    let s = TestServer::start().await;
    let n = id_of(&s.number("+14155550123").await);
    let one = format!("/v1/numbers/{n}");
    let body = || Some(json!({ "phoneNumber": "+14155550199" }));
    let routes: Vec<(Method, &str, Option<Value>)> = vec![
        (Method::POST, "/v1/numbers", body()),
        (Method::GET, "/v1/numbers", None),
        (Method::GET, &one, None),
        (Method::PATCH, &one, body()),
        (Method::DELETE, &one, None),
    ];
    for key in [None, Some("sb_live_wrongwrongwrongwrongwrongwrongwrongwrong"), Some("")] {
        for (method, path, b) in &routes {
            let got = s.call_as(key, method.clone(), path, b.clone()).await;
            assert_eq!(got.0, StatusCode::UNAUTHORIZED, "{method} {path} with {key:?}: {}", got.1);
            assert!(got.1["detail"].is_string(), "{}", got.1);
        }
    }
    // Nothing was created, changed or deleted by the refused requests.
    assert_eq!(total(&s).await, 1);
    let (st, v) = s.get(&one).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["phoneNumber"], "+14155550123");
}
