//! `/v1/calls`: a call made over a real Twilio media websocket (a DTMF turn, no models needed to
//! answer) listed with filters and pagination, read back with its transcripts and messages; bad
//! filters are 422s naming the parameter, unknown ids 404s.

mod common;

use std::time::Duration;

use common::media::{twilio, Client};
use common::{assert_detail, ended_call, TestServer};
use serde_json::json;

/// One finished call from `from` whose caller typed 4 2 #.
async fn keyed_call(s: &TestServer, agent_id: &serde_json::Value, from: &str) -> String {
    let mut c = Client::connect(s.addr, "/twilio/media", |n| Some(twilio::mark(n))).await;
    c.send(twilio::start(json!({"token": s.key, "agentId": agent_id, "from": from, "to": "+15550002222"})))
        .await;
    let mut msgs: Vec<_> = (0..20).map(|i| twilio::media(i, &[0xFF; 160])).collect();
    msgs.push(twilio::dtmf('4'));
    msgs.push(twilio::dtmf('2'));
    msgs.push(twilio::dtmf('#'));
    msgs.extend((20..45).map(|i| twilio::media(i, &[0xFF; 160])));
    c.stream(msgs, Duration::from_millis(100)).await;
    c.send(twilio::stop()).await;
    c.closed().await;
    ended_call(s).await.id
}

#[tokio::test]
async fn calls_are_listed_filtered_and_read_back_with_their_turns() {
    let s = TestServer::start().await;
    let a = s.agent(json!({"name": "Keys", "maxSilenceMs": 60000})).await;
    let b = s.agent(json!({"name": "Other", "maxSilenceMs": 60000})).await;
    let first = keyed_call(&s, &a["id"], "+15550001111").await;
    let second = keyed_call(&s, &b["id"], "+15550003333").await;

    let (st, one) = s.get(&format!("/v1/calls/{first}")).await;
    assert_eq!(st, 200, "{one}");
    assert_eq!(one["id"], first.as_str());
    assert_eq!(one["agentId"], a["id"]);
    assert_eq!(one["agentName"], "Keys");
    assert_eq!(
        (one["fromNumber"].as_str(), one["toNumber"].as_str()),
        (Some("+15550001111"), Some("+15550002222"))
    );
    assert_eq!((one["status"].as_str(), one["direction"].as_str()), (Some("completed"), Some("inbound")));
    assert!(one["startedAt"].is_string() && one["endedAt"].is_string(), "{one}");
    let turns = one["transcripts"].as_array().unwrap();
    assert_eq!(turns.len(), 1, "{one}");
    assert_eq!(turns[0]["transcript"], "42");
    assert!(
        turns[0]["response"].is_null() && turns[0]["id"].is_string() && turns[0]["createdAt"].is_string()
    );
    assert_eq!(one["messages"], json!([]));

    // Newest first; list items carry no transcripts.
    let (st, all) = s.get("/v1/calls").await;
    assert_eq!(st, 200);
    assert_eq!(all["total"], 2);
    assert_eq!(all["data"][0]["id"], second.as_str());
    assert!(all["data"][0].get("transcripts").is_none());
    let (_, paged) = s.get("/v1/calls?limit=1").await;
    assert_eq!((paged["data"].as_array().unwrap().len(), paged["hasMore"].as_bool()), (1, Some(true)));
    let (_, paged) = s.get("/v1/calls?limit=1&offset=1").await;
    assert_eq!(
        (paged["data"][0]["id"].as_str(), paged["hasMore"].as_bool()),
        (Some(first.as_str()), Some(false))
    );

    let ids = |v: &serde_json::Value| -> Vec<String> {
        v["data"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(ids(&s.get("/v1/calls?search=0003333").await.1), [second.as_str()]);
    assert_eq!(ids(&s.get("/v1/calls?search=Keys").await.1), [first.as_str()]);
    assert_eq!(ids(&s.get("/v1/calls?status=completed&direction=inbound").await.1).len(), 2);
    assert!(ids(&s.get("/v1/calls?status=ringing").await.1).is_empty());
    assert!(ids(&s.get("/v1/calls?direction=outbound").await.1).is_empty());
    let agent_calls = s.get(&format!("/v1/agents/{}/calls", a["id"].as_str().unwrap())).await.1;
    assert_eq!((ids(&agent_calls), agent_calls["total"].as_i64()), (vec![first.clone()], Some(1)));

    assert_detail(&s.get("/v1/calls?status=done").await, 422, "status");
    assert_detail(&s.get("/v1/calls?direction=sideways").await, 422, "direction");
    assert_detail(&s.get("/v1/calls?limit=0").await, 422, "limit");
    assert_eq!(s.get("/v1/calls/call_nope").await.0, 404);
    assert_eq!(s.get("/v1/agents/agent_nope/calls").await.0, 404);
}
