//! A media session: one websocket from start message to close.
//!
//! 1. Handshake: wait (bounded) for the protocol's start message; audio before it, malformed
//!    input or silence past the start timeout (`--media-start-timeout-secs`, default 10 s) close
//!    the socket with a code and reason.
//! 2. Admission: authorise (a one-time media token minted by an answer endpoint, or an API key),
//!    choose the agent (`agentId`, else the called number) or the loopback diagnostics mode,
//!    take a place under the concurrent-call cap — all before any call record is written.
//! 3. The call: spawn the actors, pump socket ⇄ actors until stop, hang-up, error or an outside
//!    end (API, drain); then stop the actors and write the end of the call record.
//!
//! Generic over any `Stream`/`Sink` of websocket messages, so tests can drive it with channels.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tracing::Instrument;

use super::conversation::Mode;
use super::listener::Ingress;
use super::registry::{CallRegistry, Refusal};
use super::supervisor::{self, CallHandles};
use super::CallControl;
use crate::agent::{AgentConfig, VoiceMode};
use crate::metrics::Metrics;
use crate::store::{Call, CallStatus, NewCall, Store, MEDIA_TOKEN_PREFIX};
use crate::transport::control::{ControlError, GatewayControl};
use crate::transport::{
    close_code, MediaEvent, Outbound, Protocol, ProtocolError, StartInfo, Wire, WsMessage,
};

/// Normal closure.
const CLOSE_NORMAL: u16 = 1000;
/// The server ends the call (drain, or ended through the API).
const CLOSE_GOING_AWAY: u16 = 1001;
/// Longest a frame's write may take before the gateway is considered gone.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// What every session needs from the server.
#[derive(Clone)]
pub struct SessionContext {
    pub store: Store,
    pub registry: Arc<CallRegistry>,
    pub metrics: Arc<Metrics>,
    pub control: Arc<GatewayControl>,
    /// How long a connected socket may take to send its start message.
    pub start_timeout: Duration,
    /// Speech engines shared by every call.
    pub engines: Arc<crate::providers::Engines>,
    /// Client for the customers' webhooks (one connection pool).
    pub webhook_http: reqwest::Client,
    /// Where agent calls are recorded; `None` when recording is off.
    pub recordings: Option<super::recording::RecordingWriter>,
}

/// Why a session ended, as written to the call record and the close frame.
#[derive(Debug, Clone, PartialEq)]
struct Ending {
    status: CallStatus,
    reason: String,
    close: Option<(u16, String)>,
}

impl Ending {
    fn completed(reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self { status: CallStatus::Completed, close: Some((CLOSE_NORMAL, reason.clone())), reason }
    }

    fn failed(code: u16, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self { status: CallStatus::Failed, close: Some((code, reason.clone())), reason }
    }
}

/// A refusal before the call exists: close code and reason.
struct Reject(u16, String);

impl From<ProtocolError> for Reject {
    fn from(e: ProtocolError) -> Self {
        Reject(e.close_code(), e.to_string())
    }
}

/// Runs one media websocket to its end.
///
/// `pre_authorised`: the upgrade request itself was authorised (a valid `X-Twilio-Signature`),
/// so the start message needs no `token` — but then it must name (callSid) a ringing call that
/// `/twilio/voice` created.
pub async fn run<S, E>(socket: S, protocol: Protocol, ctx: SessionContext, pre_authorised: bool)
where
    S: Stream<Item = Result<WsMessage, E>> + Sink<WsMessage> + Unpin + Send,
    E: std::fmt::Display,
{
    let (mut sink, mut stream) = socket.split();
    let mut wire = protocol.wire();
    let transport = protocol.as_str();

    let start = match tokio::time::timeout(ctx.start_timeout, await_start(&mut stream, wire.as_mut())).await {
        Ok(Ok(Some(start))) => start,
        Ok(Ok(None)) => {
            tracing::info!(transport, "media socket closed before its start message");
            return;
        }
        Ok(Err(Reject(code, reason))) => {
            return reject(&mut sink, &ctx.metrics, transport, code, &reason).await
        }
        Err(_) => {
            let reason = format!("no start message within {} s", ctx.start_timeout.as_secs());
            return reject(&mut sink, &ctx.metrics, transport, close_code::POLICY_VIOLATION, &reason).await;
        }
    };

    let (call, mode, admission) = match admit(&ctx, protocol, &start, pre_authorised).await {
        Ok(admitted) => admitted,
        Err(Reject(code, reason)) => return reject(&mut sink, &ctx.metrics, transport, code, &reason).await,
    };
    let mut start = start;
    if start.call_id.is_none() {
        // A stream that does not name its call (Vonage, for calls we dial before the gateway
        // has given them an id) is controlled by the id the gateway answered the dial with.
        start.call_id = call.gateway_call_id.clone();
    }
    let span = tracing::info_span!("call", call_id = %call.id, transport);
    run_call(sink, stream, wire, ctx, start, call, mode, admission).instrument(span).await;
}

/// The admitted call: actors up, media pumped, record written, place released.
#[allow(clippy::too_many_arguments)]
async fn run_call<Si, St, E>(
    mut sink: Si,
    mut stream: St,
    mut wire: Box<dyn Wire>,
    ctx: SessionContext,
    start: StartInfo,
    call: Call,
    mode: Mode,
    admission: super::registry::Admission,
) where
    Si: Sink<WsMessage> + Unpin,
    St: Stream<Item = Result<WsMessage, E>> + Unpin,
    E: std::fmt::Display,
{
    let transport = wire.protocol().as_str();
    let agent = matches!(mode, Mode::Agent(_));
    tracing::info!(stream_id = %start.stream_id, loopback = matches!(mode, Mode::Loopback { .. }), "call started");
    let setup = supervisor::CallSetup {
        call_id: &call.id,
        store: &ctx.store,
        engines: &ctx.engines,
        metrics: &ctx.metrics,
        feed: &admission.feed,
    };
    let mut handles = match supervisor::spawn(mode, start.format, setup) {
        Ok(h) => h,
        Err(e) => {
            let ending = Ending::failed(close_code::INVALID_PAYLOAD, e.to_string());
            close(&mut sink, &ending).await;
            supervisor::finish(&ctx.store, &call.id, ending.status, &ending.reason).await;
            ctx.metrics.call_outcome(transport, "failed");
            return;
        }
    };
    let mut recording = match (&ctx.recordings, agent && !call.disable_recording) {
        (Some(w), true) => w.open(&call.id, start.format),
        _ => None,
    };
    let ending =
        pump(&mut sink, &mut stream, wire.as_mut(), &mut handles, &admission, &ctx, &start, &mut recording)
            .await;
    if let Some(r) = recording {
        ctx.metrics.dropped("recording").inc_by(r.dropped());
        r.finish();
    }
    close(&mut sink, &ending).await;
    handles.stop().await;
    supervisor::finish(&ctx.store, &call.id, ending.status, &ending.reason).await;
    if agent {
        call_ended_event(&ctx, &call, ending.status).await;
    }
    ctx.metrics.call_outcome(transport, ending.status.as_str());
    drop(admission);
}

/// Reads until the start message. `Ok(None)`: the peer went away first.
async fn await_start<St, E>(stream: &mut St, wire: &mut dyn Wire) -> Result<Option<StartInfo>, Reject>
where
    St: Stream<Item = Result<WsMessage, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut events = Vec::with_capacity(2);
    while let Some(msg) = stream.next().await {
        let msg = match msg {
            Ok(m) => m,
            Err(e) => return Err(websocket_fault(&e)),
        };
        match msg {
            WsMessage::Close(_) => return Ok(None),
            WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
            msg => wire.decode(msg, &mut events)?,
        }
        for ev in events.drain(..) {
            match ev {
                MediaEvent::Start(start) => return Ok(Some(start)),
                MediaEvent::Audio(_) => return Err(ProtocolError::MediaBeforeStart.into()),
                MediaEvent::Stop => return Ok(None),
                _ => {}
            }
        }
    }
    Ok(None)
}

/// Whether a websocket read error means the peer's connection is gone (reset, broken pipe, EOF
/// without a close frame) rather than a protocol fault. The error type is the transport's, so its
/// text is what can be inspected here.
fn is_connection_lost(text: &str) -> bool {
    ["without closing handshake", "Connection reset", "Broken pipe", "connection reset", "UnexpectedEof"]
        .iter()
        .any(|needle| text.contains(needle))
}

fn websocket_fault(e: &impl std::fmt::Display) -> Reject {
    let text = e.to_string();
    if text.contains("too long") || text.contains("too big") || text.contains("Space limit") {
        Reject(close_code::MESSAGE_TOO_BIG, format!("message too big: {text}"))
    } else {
        Reject(close_code::INVALID_PAYLOAD, format!("websocket error: {text}"))
    }
}

/// Authorises the stream, picks the agent or loopback, takes a place, creates/claims the call.
async fn admit(
    ctx: &SessionContext,
    protocol: Protocol,
    start: &StartInfo,
    pre_authorised: bool,
) -> Result<(Call, Mode, super::registry::Admission), Reject> {
    let policy = |reason: String| Reject(close_code::POLICY_VIOLATION, reason);
    let param = |k: &str| start.params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let internal = |e: crate::store::StoreError| {
        tracing::error!(error = %e, "media admission: store failed");
        Reject(close_code::INTERNAL_ERROR, "internal error".into())
    };
    let token = param("token");
    if token.is_none() && !pre_authorised {
        return Err(policy("missing 'token' parameter (media token or API key)".into()));
    }
    let loopback = param("mode") == Some("loopback");
    let mut agent_config = None;

    // Capacity before anything is written.
    let mut admission = ctx.registry.admit().map_err(|r| match r {
        Refusal::AtCapacity(n) => Reject(
            close_code::TRY_AGAIN_LATER,
            format!("at capacity ({n} concurrent calls); try again later"),
        ),
        Refusal::Draining => {
            Reject(close_code::TRY_AGAIN_LATER, "server is draining; try another node".into())
        }
    })?;

    let call = if token.is_none() {
        // Authorised by the signed upgrade alone: only the ringing call Twilio was told to
        // stream (same callSid) may start — a replayed signature cannot open other calls.
        let call_sid = start.call_id.as_deref().unwrap_or_default();
        let call = ctx
            .store
            .claim_call_by_gateway_id(protocol.as_str(), call_sid, &start.stream_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| policy(format!("signed stream matches no ringing call (callSid '{call_sid}')")))?;
        if let Some(agent_id) = call.agent_id.clone().filter(|_| !loopback) {
            match check_agent(ctx, &agent_id).await {
                Ok(a) => agent_config = Some(a),
                Err(r) => {
                    supervisor::finish(&ctx.store, &call.id, CallStatus::Failed, &r.1).await;
                    return Err(r);
                }
            }
        }
        call
    } else if let Some(token) = token.filter(|t| t.starts_with(MEDIA_TOKEN_PREFIX)) {
        // Minted for one ringing call by an answer endpoint.
        let call = ctx
            .store
            .claim_call(token, protocol.as_str(), &start.stream_id, start.call_id.as_deref())
            .await
            .map_err(internal)?
            .ok_or_else(|| policy("invalid, expired or already used media token".into()))?;
        if !loopback {
            if let Some(agent_id) = &call.agent_id {
                match check_agent(ctx, agent_id).await {
                    Ok(a) => agent_config = Some(a),
                    Err(r) => {
                        supervisor::finish(&ctx.store, &call.id, CallStatus::Failed, &r.1).await;
                        return Err(r);
                    }
                }
            }
        }
        call
    } else {
        if let Some(key) = token {
            if ctx.store.verify_key(key).await.map_err(internal)?.is_none() {
                return Err(policy("invalid or revoked API key in 'token'".into()));
            }
        }
        let (agent_id, agent_name, number) = if loopback {
            (None, None, None)
        } else {
            let agent_id = match param("agentId") {
                Some(id) => id.to_string(),
                None => {
                    let to = param("to")
                        .ok_or_else(|| policy("no 'agentId' and no 'to' number to pick an agent".into()))?;
                    let number = ctx.store.find_number(to).await.map_err(internal)?;
                    number
                        .and_then(|n| n.agent_id)
                        .ok_or_else(|| policy(format!("no agent is attached to number {to}")))?
                }
            };
            let agent = check_agent(ctx, &agent_id).await?;
            let number = match param("to") {
                Some(to) => ctx.store.find_number(to).await.map_err(internal)?,
                None => None,
            };
            let name = agent.name.clone();
            agent_config = Some(agent);
            (Some(agent_id), Some(name), number)
        };
        let new = NewCall {
            agent_id,
            agent_name,
            phone_number_id: number.as_ref().map(|n| n.id.clone()),
            phone_number: number.map(|n| n.phone_number),
            from_number: param("from").map(str::to_string),
            to_number: param("to").map(str::to_string),
            direction: if protocol == Protocol::Native { "web" } else { "inbound" }.to_string(),
            transport: Some(protocol.as_str().to_string()),
            gateway_call_id: start.call_id.clone(),
            stream_id: Some(start.stream_id.clone()),
            ..NewCall::default()
        };
        ctx.store.create_live_call(&new).await.map_err(internal)?
    };
    let mode = match (loopback, agent_config) {
        (true, _) => Mode::Loopback {
            transfer_to: param("transferTo").map(str::to_string),
            listen: param("listen") == Some("true"),
        },
        (false, Some(agent)) => Mode::Agent(Box::new(agent_call(ctx, &call, agent, start).await)),
        (false, None) => {
            let reason = "the call has no agent".to_string();
            supervisor::finish(&ctx.store, &call.id, CallStatus::Failed, &reason).await;
            return Err(policy(reason));
        }
    };
    admission.bind(&call.id);
    Ok((call, mode, admission))
}

/// The agent side of a call: its configuration, the call's variables and who answers.
async fn agent_call(
    ctx: &SessionContext,
    call: &Call,
    mut config: AgentConfig,
    start: &StartInfo,
) -> super::conversation::AgentCall {
    let params = &start.params;
    let mut variables: std::collections::BTreeMap<String, String> = params
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "token" | "mode"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // What `POST /v1/calls` asked for this call (validated when it was stored).
    if let Some(o) = call.overrides.as_deref() {
        match serde_json::from_str::<crate::agent::CallOverrides>(o) {
            Ok(o) => {
                o.apply(&mut config);
                variables.extend(o.variables);
            }
            Err(e) => {
                tracing::warn!(error = %e, "the call's stored overrides do not parse; agent settings used")
            }
        }
    }
    variables.insert("callId".into(), call.id.clone());
    variables.insert("agentName".into(), config.name.clone());
    variables.insert("from".into(), call.from_number.clone().unwrap_or_default());
    variables.insert("to".into(), call.to_number.clone().unwrap_or_default());
    let agent_id = call.agent_id.clone().unwrap_or_default();
    let responder = match config.voice_mode {
        VoiceMode::Hosted => super::hosted::responder(
            ctx.engines.llm.as_ref(),
            &config,
            ctx.engines.model_tiers.model(config.model_tier).to_string(),
            &variables,
        ),
        VoiceMode::Webhook => {
            let http = ctx.webhook_http.clone();
            match crate::webhook::responder_for(
                &ctx.store,
                http,
                ctx.metrics.clone(),
                &agent_id,
                webhook_call(call),
            )
            .await
            {
                Ok(Some(r)) => Some(std::sync::Arc::new(r) as super::reply::SharedResponder),
                Ok(None) => {
                    tracing::warn!(
                        agent_id,
                        "webhook agent without a webhook: caller turns are recorded, not answered"
                    );
                    None
                }
                Err(e) => {
                    tracing::error!(agent_id, error = %e, "cannot load the agent's webhook");
                    None
                }
            }
        }
    };
    super::conversation::AgentCall {
        call_id: call.id.clone(),
        agent_id,
        config,
        variables: std::sync::Arc::new(variables),
        responder,
        filler_after: ctx.engines.filler_after,
        preemptive: ctx.engines.preemptive_replies,
        messenger: Some(std::sync::Arc::new(super::messaging::Messenger {
            control: ctx.control.clone(),
            store: ctx.store.clone(),
            call_id: call.id.clone(),
            account: start.account_id.clone(),
            caller: call.from_number.clone().unwrap_or_default(),
            number: call.to_number.clone().unwrap_or_default(),
        })),
        answered_by: params.get("answeredBy").cloned(),
    }
}

/// The call as webhooks describe it.
fn webhook_call(call: &Call) -> crate::webhook::CallInfo {
    crate::webhook::CallInfo {
        call_id: call.id.clone(),
        number_id: call.phone_number_id.clone(),
        from: call.from_number.clone(),
        to: call.to_number.clone(),
        direction: call.direction.clone(),
    }
}

/// Queues `agent.call_ended` (the whole transcript, as committed) when the agent has a webhook.
async fn call_ended_event(ctx: &SessionContext, call: &Call, status: CallStatus) {
    let Some(agent_id) = call.agent_id.as_deref() else { return };
    let turns = match ctx.store.list_call_turns(&call.id).await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "call_ended: cannot read the call's turns");
            return;
        }
    };
    let at = |t: &crate::store::CallTurn| t.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut transcript = Vec::with_capacity(turns.len() * 2);
    for t in &turns {
        transcript.push(super::reply::HistoryItem {
            speaker: super::reply::Speaker::Caller,
            text: t.transcript.clone(),
            at: at(t),
        });
        if let Some(r) = t.response.clone().filter(|r| !r.is_empty()) {
            transcript.push(super::reply::HistoryItem {
                speaker: super::reply::Speaker::Agent,
                text: r,
                at: at(t),
            });
        }
    }
    if let Err(e) = crate::webhook::enqueue_call_ended(
        &ctx.store,
        agent_id,
        &webhook_call(call),
        status.as_str(),
        &transcript,
    )
    .await
    {
        tracing::error!(error = %e, "call_ended: cannot queue the event");
    }
}

/// The agent must exist and be callable; returns its configuration.
async fn check_agent(ctx: &SessionContext, agent_id: &str) -> Result<AgentConfig, Reject> {
    let agent = ctx.store.get_agent(agent_id).await.map_err(|e| match e {
        crate::store::StoreError::NotFound { .. } => {
            Reject(close_code::POLICY_VIOLATION, format!("unknown agent '{agent_id}'"))
        }
        other => {
            tracing::error!(error = %other, "media admission: agent lookup failed");
            Reject(close_code::INTERNAL_ERROR, "internal error".into())
        }
    })?;
    if agent.config.voice_mode == VoiceMode::Hosted
        && agent.config.system_prompt.as_deref().is_none_or(str::is_empty)
    {
        return Err(Reject(
            close_code::POLICY_VIOLATION,
            format!("agent '{agent_id}' is hosted but has no systemPrompt"),
        ));
    }
    if let Err(reason) = ctx.engines.check_language(&agent.config.language) {
        return Err(Reject(
            close_code::POLICY_VIOLATION,
            format!("agent '{agent_id}' cannot be served: {reason}"),
        ));
    }
    Ok(agent.config)
}

/// Moves media both ways until the call ends: reads the socket, and at every 20 ms deadline has
/// playout build the frame and writes it. Returns how the call ended.
#[allow(clippy::too_many_arguments)]
async fn pump<Si, St, E>(
    sink: &mut Si,
    stream: &mut St,
    wire: &mut dyn Wire,
    handles: &mut CallHandles,
    admission: &super::registry::Admission,
    ctx: &SessionContext,
    start: &StartInfo,
    recording: &mut Option<super::recording::CallRecording>,
) -> Ending
where
    Si: Sink<WsMessage> + Unpin,
    St: Stream<Item = Result<WsMessage, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut events = Vec::with_capacity(4);
    let frames_out = ctx.metrics.frames_out.clone();
    let cancelled = admission.cancel.cancelled();
    tokio::pin!(cancelled);
    let next_frame = tokio::time::sleep_until(handles.playout_driver.deadline());
    tokio::pin!(next_frame);
    loop {
        tokio::select! {
            biased;
            () = &mut cancelled => {
                if let Some(reason) = admission.end_reason.get() {
                    // Hung up from outside (the API): as an agent's hang-up, the gateway is told.
                    return control(sink, wire, ctx, start, CallControl::Hangup { reason: reason.clone() }).await;
                }
                return Ending { close: Some((CLOSE_GOING_AWAY, "ended by the server".into())), ..Ending::completed("ended by the server") };
            }
            () = &mut next_frame => {
                if let Err(ending) = send_frame(sink, wire, handles, recording, &frames_out, tokio::time::Instant::now()).await {
                    return ending;
                }
                next_frame.as_mut().reset(handles.playout_driver.deadline());
            }
            ctl = handles.control.recv() => {
                let Some(ctl) = ctl else { return Ending::failed(close_code::INTERNAL_ERROR, "conversation stopped") };
                return control(sink, wire, ctx, start, ctl).await;
            }
            msg = stream.next() => {
                let msg = match msg {
                    None => return Ending::completed("socket closed"),
                    Some(Err(e)) => {
                        if is_connection_lost(&e.to_string()) {
                            // The gateway vanished (network or process gone): the call is over.
                            return Ending { close: None, ..Ending::completed("connection lost without a close frame") };
                        }
                        let Reject(code, reason) = websocket_fault(&e);
                        return Ending::failed(code, reason);
                    }
                    Some(Ok(WsMessage::Close(_))) => return Ending::completed("socket closed by the gateway"),
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
                    Some(Ok(m)) => m,
                };
                if let Err(e) = wire.decode(msg, &mut events) {
                    events.clear();
                    return Ending::failed(e.close_code(), e.to_string());
                }
                let mut audio = false;
                for ev in events.drain(..) {
                    match ev {
                        MediaEvent::Audio(payload) => {
                            if let Some(r) = recording.as_mut() {
                                r.caller(&payload);
                            }
                            handles.ingress.push(Ingress::Audio(payload));
                            audio = true;
                        }
                        MediaEvent::Dtmf(d) => {
                            handles.ingress.push(Ingress::Dtmf(d));
                        }
                        MediaEvent::Mark(name) => handles.playout_driver.mark_played(&name),
                        MediaEvent::Cleared => {}
                        MediaEvent::Stop => return Ending::completed("caller hung up"),
                        MediaEvent::Start(_) => {
                            let e = ProtocolError::DuplicateStart;
                            return Ending::failed(e.close_code(), e.to_string());
                        }
                    }
                }
                // The playout clock follows the caller's frames; when the agent's frame is due
                // within a moment it leaves now, and this wake-up serves both directions.
                if audio {
                    let now = tokio::time::Instant::now();
                    if handles.playout_driver.caller_frame(now) {
                        if let Err(ending) = send_frame(sink, wire, handles, recording, &frames_out, now).await {
                            return ending;
                        }
                    }
                    next_frame.as_mut().reset(handles.playout_driver.deadline());
                }
            }
        }
    }
}

/// Builds the frame due at `now` through playout and writes it (and what follows it).
/// Bounded: a gateway that stopped reading (host gone without a RST) must not hold the call —
/// and its cancellation — until TCP gives up.
async fn send_frame<Si>(
    sink: &mut Si,
    wire: &mut dyn Wire,
    handles: &mut CallHandles,
    recording: &mut Option<super::recording::CallRecording>,
    frames_out: &prometheus_client::metrics::counter::Counter,
    now: tokio::time::Instant,
) -> Result<(), Ending>
where
    Si: Sink<WsMessage> + Unpin,
{
    let Ok(out) = handles.playout_driver.tick(now) else {
        return Err(Ending::failed(close_code::INTERNAL_ERROR, "playout stopped"));
    };
    let write = async {
        let mut audio = 0;
        for item in out {
            if let (Some(r), Outbound::Audio(frame)) = (recording.as_mut(), item) {
                r.agent(frame);
            }
            if let Some(msg) = wire.encode(item) {
                audio += u64::from(matches!(item, Outbound::Audio(_)));
                sink.feed(msg).await.map_err(|_| "socket write failed")?;
            }
        }
        sink.flush().await.map_err(|_| "socket write failed")?;
        Ok::<u64, &'static str>(audio)
    };
    match tokio::time::timeout(WRITE_TIMEOUT, write).await {
        Ok(Ok(audio)) => {
            frames_out.inc_by(audio);
            Ok(())
        }
        Ok(Err(e)) => Err(Ending::failed(close_code::INTERNAL_ERROR, e)),
        Err(_) => Err(Ending::failed(close_code::INTERNAL_ERROR, "socket write stalled")),
    }
}

/// Carries out a hang-up or transfer: in-band where the protocol has it, else the gateway's REST.
async fn control<Si>(
    sink: &mut Si,
    wire: &mut dyn Wire,
    ctx: &SessionContext,
    start: &StartInfo,
    ctl: CallControl,
) -> Ending
where
    Si: Sink<WsMessage> + Unpin,
{
    let item = match &ctl {
        CallControl::Hangup { reason } => Outbound::Hangup { reason: reason.clone() },
        CallControl::Transfer { to } => Outbound::Transfer { to: to.clone() },
    };
    let in_band = match wire.encode(&item) {
        Some(msg) => sink.send(msg).await.is_ok(),
        None => false,
    };
    let protocol = wire.protocol();
    let result = if in_band {
        Ok(())
    } else {
        match &ctl {
            CallControl::Hangup { .. } => ctx.control.hangup(protocol, start).await,
            CallControl::Transfer { to } => ctx.control.transfer(protocol, start, to).await,
        }
    };
    match (ctl, result) {
        (CallControl::Hangup { reason }, Ok(())) => Ending::completed(reason),
        // Without REST credentials, closing the stream is the hang-up: the gateway moves past
        // its <Connect><Stream>/stream verb, and with nothing after it the call ends.
        (
            CallControl::Hangup { reason },
            Err(e @ (ControlError::NotConfigured(_) | ControlError::NoCallId(_))),
        ) => {
            tracing::info!(error = %e, "hang-up by closing the media stream");
            Ending::completed(reason)
        }
        (CallControl::Transfer { to }, Ok(())) => Ending::completed(format!("transferred to {to}")),
        (_, Err(e)) => {
            tracing::warn!(error = %e, "gateway call control failed");
            Ending::failed(CLOSE_NORMAL, format!("call control failed: {e}"))
        }
    }
}

/// Closes the socket with the ending's code and reason.
async fn close<Si: Sink<WsMessage> + Unpin>(sink: &mut Si, ending: &Ending) {
    if let Some((code, reason)) = &ending.close {
        send_close(sink, *code, reason).await;
    }
}

/// A close frame with the reason cut to the 123 bytes the protocol allows.
fn close_frame(code: u16, reason: &str) -> WsMessage {
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    WsMessage::Close(Some(axum::extract::ws::CloseFrame { code, reason: reason[..cut].into() }))
}

async fn send_close<Si: Sink<WsMessage> + Unpin>(sink: &mut Si, code: u16, reason: &str) {
    let _ = sink.send(close_frame(code, reason)).await;
    let _ = sink.close().await;
}

/// Refuses a stream before any call exists: close frame, log line, metric.
async fn reject<Si: Sink<WsMessage> + Unpin>(
    sink: &mut Si,
    metrics: &Metrics,
    transport: &str,
    code: u16,
    reason: &str,
) {
    tracing::warn!(transport, code, reason, "media stream refused");
    let outcome = if code == close_code::TRY_AGAIN_LATER { "refused" } else { "rejected" };
    metrics.call_outcome(transport, outcome);
    send_close(sink, code, reason).await;
}
