//! Gateway call control over the gateways' REST APIs: hang-up and transfer for Twilio, Telnyx,
//! Vonage and Plivo (the native protocol does both in-band, so it is a no-op here).
//!
//! | gateway | hang-up | transfer | auth |
//! |---|---|---|---|
//! | Twilio | `POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json` form `Status=completed` | same URL, form `Twiml=<Response><Dial>+1…</Dial></Response>` | Basic `AccountSid:AuthToken` |
//! | Telnyx | `POST /v2/calls/{call_control_id}/actions/hangup` `{}` | `POST …/actions/transfer` `{"to"}` | Bearer API key |
//! | Plivo | `DELETE /v1/Account/{auth_id}/Call/{call_uuid}/` | `POST` same URL, form `legs=aleg&aleg_url=<public_url>/plivo/transfer?to=…&aleg_method=GET` | Basic `auth_id:auth_token` |
//! | Vonage | `PUT /v1/calls/{uuid}` `{"action":"hangup"}` | `PUT` same URL, `{"action":"transfer","destination":{"type":"ncco","ncco":[connect phone]}}` | Bearer JWT |
//!
//! Outbound calls (`POST /v1/calls`, see [`crate::transport::outbound`]):
//!
//! | gateway | dial | answers | needs |
//! |---|---|---|---|
//! | Twilio | `POST /2010-04-01/Accounts/{AccountSid}/Calls.json` form `To, From, Twiml, StatusCallback, StatusCallbackEvent…` | `sid` | account SID, auth token |
//! | Telnyx | `POST /v2/texml/calls/{connection_id}` JSON `To, From, Texml, StatusCallback, StatusCallbackEvent` | `call_sid` | API key, TeXML connection id |
//! | Vonage | `POST /v1/calls` JSON `to: [{type: phone, number}], from, ncco, event_url` | `uuid` | JWT |
//! | Plivo | `POST /v1/Account/{auth_id}/Call/` JSON `from, to, answer_url, ring_url, hangup_url` | `request_uuid` | auth id, auth token |
//!
//! The gateway's call id comes from the stream's start message ([`StartInfo::call_id`]); the
//! Twilio account falls back to [`StartInfo::account_id`]. Base URLs come from [`GatewayConfig`]
//! so tests can point them at a local server. Credentials are never logged or put in errors.

use std::time::Duration;

use reqwest::{Method, RequestBuilder};
use serde_json::json;

use crate::agent::is_e164;
use crate::config::{GatewayConfig, OutboundGateway};
use crate::transport::{Protocol, StartInfo};

/// Whole-request deadline of one call-control request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP/TLS connect deadline.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Most characters of a gateway's error body kept in [`ControlError::Status`].
pub const ERROR_BODY_CHARS: usize = 300;

/// Why a hang-up or transfer through a gateway's REST API failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The gateway's credentials are not configured.
    #[error("{0} call control is not configured (credentials missing)")]
    NotConfigured(&'static str),
    /// The start message named no gateway call id, so there is nothing to address.
    #[error("the {0} stream's start message carried no gateway call id; the call cannot be controlled")]
    NoCallId(&'static str),
    /// A transfer that needs a URL the gateway fetches, without a configured public URL.
    #[error("{0} transfer needs the public URL (public_url) for the gateway to fetch its transfer XML")]
    NoPublicUrl(&'static str),
    /// The transfer target is not an E.164 number.
    #[error("transfer target '{0}' is not an E.164 number ('+' then 8–15 digits)")]
    InvalidTarget(String),
    /// The gateway answered with a non-2xx status.
    #[error("{protocol} API answered HTTP {status} to {operation}: {body}")]
    Status { protocol: &'static str, operation: &'static str, status: u16, body: String },
    /// The gateway accepted the request but its answer lacked what we need (the call id).
    #[error("{protocol} API accepted {operation} but {message}")]
    BadAnswer { protocol: &'static str, operation: &'static str, message: String },
    /// The request did not complete (connect, timeout, …).
    #[error("{protocol} API request for {operation} failed: {message}")]
    Network { protocol: &'static str, operation: &'static str, message: String },
}

/// REST call control, configured once per server.
pub struct GatewayControl {
    config: GatewayConfig,
    /// Public base URL (`https://…`, no trailing slash) for URLs the gateway fetches back
    /// (Plivo transfer XML).
    public_url: Option<String>,
    client: reqwest::Client,
}

/// The body of one request.
enum Body {
    None,
    Form(Vec<(&'static str, String)>),
    Json(serde_json::Value),
}

/// How a request authenticates.
enum Auth<'a> {
    Basic(&'a str, &'a str),
    Bearer(&'a str),
}

impl GatewayControl {
    pub fn new(config: GatewayConfig) -> Self {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "call-control HTTP client setup failed; using defaults");
                reqwest::Client::new()
            });
        Self { config, public_url: None, client }
    }

    /// Sets the public base URL (the server's `public_url`), needed by Plivo transfers.
    pub fn with_public_url(mut self, public_url: Option<String>) -> Self {
        self.public_url = public_url.map(|u| u.trim_end_matches('/').to_string()).filter(|u| !u.is_empty());
        self
    }

    /// Ends the call at the gateway.
    pub async fn hangup(&self, protocol: Protocol, start: &StartInfo) -> Result<(), ControlError> {
        const OP: &str = "hang-up";
        let p = protocol.as_str();
        let c = &self.config;
        match protocol {
            Protocol::Native => Ok(()),
            Protocol::Twilio => {
                let (sid, token) = self.twilio_credentials(start)?;
                let call = call_id(protocol, start)?;
                let url = self.twilio_url(&sid, call);
                let body = Body::Form(vec![("Status", "completed".to_string())]);
                self.send(protocol, OP, Method::POST, &url, Auth::Basic(&sid, token), body).await
            }
            Protocol::Telnyx => {
                let key = secret(&c.telnyx_api_key, p)?;
                let call = call_id(protocol, start)?;
                let url = format!("{}/v2/calls/{}/actions/hangup", base(&c.telnyx_api_base), segment(call));
                self.send(protocol, OP, Method::POST, &url, Auth::Bearer(key), Body::Json(json!({}))).await
            }
            Protocol::Plivo => {
                let (id, token) = self.plivo_credentials()?;
                let call = call_id(protocol, start)?;
                let url = self.plivo_url(id, call);
                self.send(protocol, OP, Method::DELETE, &url, Auth::Basic(id, token), Body::None).await
            }
            Protocol::Vonage => {
                let jwt = secret(&c.vonage_jwt, p)?;
                let call = call_id(protocol, start)?;
                let url = format!("{}/v1/calls/{}", base(&c.vonage_api_base), segment(call));
                let body = Body::Json(json!({ "action": "hangup" }));
                self.send(protocol, OP, Method::PUT, &url, Auth::Bearer(jwt), body).await
            }
        }
    }

    /// Stops a call that has not been answered yet (an outbound call still queued or ringing).
    /// Twilio needs `Status=canceled` for those (`completed` leaves them ringing); the other
    /// gateways' hang-up covers both.
    pub async fn cancel(&self, protocol: Protocol, start: &StartInfo) -> Result<(), ControlError> {
        if protocol != Protocol::Twilio {
            return self.hangup(protocol, start).await;
        }
        let (sid, token) = self.twilio_credentials(start)?;
        let call = call_id(protocol, start)?;
        let url = self.twilio_url(&sid, call);
        let body = Body::Form(vec![("Status", "canceled".to_string())]);
        self.send(protocol, "cancel", Method::POST, &url, Auth::Basic(&sid, token), body).await
    }

    /// Hands the call to `to` (E.164) at the gateway.
    pub async fn transfer(
        &self,
        protocol: Protocol,
        start: &StartInfo,
        to: &str,
    ) -> Result<(), ControlError> {
        const OP: &str = "transfer";
        let p = protocol.as_str();
        let c = &self.config;
        if protocol == Protocol::Native {
            return Ok(());
        }
        if !is_e164(to) {
            return Err(ControlError::InvalidTarget(to.to_string()));
        }
        match protocol {
            Protocol::Native => Ok(()),
            Protocol::Twilio => {
                let (sid, token) = self.twilio_credentials(start)?;
                let call = call_id(protocol, start)?;
                let url = self.twilio_url(&sid, call);
                let twiml = format!("<Response><Dial>{}</Dial></Response>", xml_escape(to));
                let body = Body::Form(vec![("Twiml", twiml)]);
                self.send(protocol, OP, Method::POST, &url, Auth::Basic(&sid, token), body).await
            }
            Protocol::Telnyx => {
                let key = secret(&c.telnyx_api_key, p)?;
                let call = call_id(protocol, start)?;
                let url = format!("{}/v2/calls/{}/actions/transfer", base(&c.telnyx_api_base), segment(call));
                self.send(
                    protocol,
                    OP,
                    Method::POST,
                    &url,
                    Auth::Bearer(key),
                    Body::Json(json!({ "to": to })),
                )
                .await
            }
            Protocol::Plivo => {
                let (id, token) = self.plivo_credentials()?;
                let call = call_id(protocol, start)?;
                let public = self.public_url.as_deref().ok_or(ControlError::NoPublicUrl(p))?;
                let aleg_url = format!("{}/plivo/transfer?to={}", http_base(public), to.replace('+', "%2B"));
                let body = Body::Form(vec![
                    ("legs", "aleg".to_string()),
                    ("aleg_url", aleg_url),
                    ("aleg_method", "GET".to_string()),
                ]);
                let url = self.plivo_url(id, call);
                self.send(protocol, OP, Method::POST, &url, Auth::Basic(id, token), body).await
            }
            Protocol::Vonage => {
                let jwt = secret(&c.vonage_jwt, p)?;
                let call = call_id(protocol, start)?;
                let url = format!("{}/v1/calls/{}", base(&c.vonage_api_base), segment(call));
                let number = to.trim_start_matches('+');
                let body = Body::Json(json!({
                    "action": "transfer",
                    "destination": {
                        "type": "ncco",
                        "ncco": [{ "action": "connect", "endpoint": [{ "type": "phone", "number": number }] }],
                    },
                }));
                self.send(protocol, OP, Method::PUT, &url, Auth::Bearer(jwt), body).await
            }
        }
    }

    /// Account SID (config, else the start message's) and auth token.
    /// Sends a text message through Twilio's Messages API (`POST …/Messages.json` with `To`,
    /// `From`, `Body`); returns the message `sid`. `account` is the call's account when the
    /// server has no account SID configured.
    pub async fn send_text(
        &self,
        account: Option<&str>,
        from: &str,
        to: &str,
        body: &str,
    ) -> Result<String, ControlError> {
        const OP: &str = "send message";
        let p = Protocol::Twilio.as_str();
        let start = StartInfo { account_id: account.map(str::to_string), ..StartInfo::default() };
        let (sid, token) = self.twilio_credentials(&start)?;
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            base(&self.config.twilio_api_base),
            segment(&sid)
        );
        let form = [("To", to), ("From", from), ("Body", body)];
        let network = |e: reqwest::Error| ControlError::Network {
            protocol: p,
            operation: OP,
            message: e.without_url().to_string(),
        };
        let resp =
            self.client.post(&url).basic_auth(&sid, Some(token)).form(&form).send().await.map_err(network)?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let body = truncate(text.trim(), ERROR_BODY_CHARS);
            return Err(ControlError::Status { protocol: p, operation: OP, status: status.as_u16(), body });
        }
        let sid = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["sid"].as_str().map(str::to_string))
            .unwrap_or_default();
        tracing::info!(message_sid = %sid, "text message sent");
        Ok(sid)
    }

    /// Whether Twilio REST credentials are configured (outbound calls need them).
    pub fn twilio_configured(&self) -> bool {
        self.outbound_missing(OutboundGateway::Twilio).is_none()
    }

    /// The settings `gateway` lacks to place outbound calls, or `None` when it can.
    pub fn outbound_missing(&self, gateway: OutboundGateway) -> Option<&'static str> {
        let c = &self.config;
        let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
        let ready = match gateway {
            OutboundGateway::Twilio => set(&c.twilio_account_sid) && set(&c.twilio_auth_token),
            OutboundGateway::Telnyx => set(&c.telnyx_api_key) && set(&c.telnyx_connection_id),
            OutboundGateway::Vonage => set(&c.vonage_jwt),
            OutboundGateway::Plivo => set(&c.plivo_auth_id) && set(&c.plivo_auth_token),
        };
        (!ready).then_some(match gateway {
            OutboundGateway::Twilio => "twilio_account_sid and twilio_auth_token",
            OutboundGateway::Telnyx => "telnyx_api_key and telnyx_connection_id",
            OutboundGateway::Vonage => "vonage_jwt",
            OutboundGateway::Plivo => "plivo_auth_id and plivo_auth_token",
        })
    }

    /// Asks Twilio to place a call (`POST …/Calls.json` with `To`, `From`, the `Twiml` to run
    /// when it is answered, and a `StatusCallback` for every progress event); returns the call's
    /// `sid`.
    pub async fn twilio_dial(
        &self,
        from: &str,
        to: &str,
        twiml: &str,
        status_callback: &str,
    ) -> Result<String, ControlError> {
        let protocol = Protocol::Twilio;
        let no_stream = StartInfo::default();
        let (sid, token) = self.twilio_credentials(&no_stream)?;
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Calls.json",
            base(&self.config.twilio_api_base),
            segment(&sid)
        );
        let mut form = vec![
            ("To", to.to_string()),
            ("From", from.to_string()),
            ("Twiml", twiml.to_string()),
            ("StatusCallback", status_callback.to_string()),
            ("StatusCallbackMethod", "POST".to_string()),
        ];
        form.extend(
            ["initiated", "ringing", "answered", "completed"].map(|e| ("StatusCallbackEvent", e.to_string())),
        );
        let auth = Auth::Basic(&sid, token);
        let answer = self.request(protocol, DIAL, Method::POST, &url, auth, Body::Form(form)).await?;
        dialled(protocol, &answer, &[&["sid"]])
    }

    /// Asks Telnyx to place a TeXML call on the configured TeXML application
    /// (`POST /v2/texml/calls/{connection_id}`, JSON `To`, `From`, inline `Texml` to run when it
    /// is answered, `StatusCallback` for every progress event); returns its `CallSid`.
    pub async fn telnyx_dial(
        &self,
        from: &str,
        to: &str,
        texml: &str,
        status_callback: &str,
    ) -> Result<String, ControlError> {
        let protocol = Protocol::Telnyx;
        let c = &self.config;
        let key = secret(&c.telnyx_api_key, protocol.as_str())?;
        let connection = secret(&c.telnyx_connection_id, protocol.as_str())?;
        let url = format!("{}/v2/texml/calls/{}", base(&c.telnyx_api_base), segment(connection));
        let body = json!({
            "To": to,
            "From": from,
            "Texml": texml,
            "StatusCallback": status_callback,
            "StatusCallbackMethod": "POST",
            "StatusCallbackEvent": "initiated ringing answered completed",
        });
        let answer =
            self.request(protocol, DIAL, Method::POST, &url, Auth::Bearer(key), Body::Json(body)).await?;
        // The connection-scoped call answers a flat call object; older answers wrap it in `data`.
        dialled(
            protocol,
            &answer,
            &[
                &["call_sid"],
                &["sid"],
                &["data", "call_sid"],
                &["data", "call_control_id"],
                &["call_control_id"],
            ],
        )
    }

    /// Asks Vonage to place a call (`POST /v1/calls`, JSON `to`/`from` phone endpoints, the
    /// `ncco` to run when it is answered, `event_url` for its events); returns its `uuid`.
    pub async fn vonage_dial(
        &self,
        from: &str,
        to: &str,
        ncco: serde_json::Value,
        event_url: &str,
    ) -> Result<String, ControlError> {
        let protocol = Protocol::Vonage;
        let c = &self.config;
        let jwt = secret(&c.vonage_jwt, protocol.as_str())?;
        let url = format!("{}/v1/calls", base(&c.vonage_api_base));
        // Vonage numbers are digits only, no '+'.
        let body = json!({
            "to": [{ "type": "phone", "number": to.trim_start_matches('+') }],
            "from": { "type": "phone", "number": from.trim_start_matches('+') },
            "ncco": ncco,
            "event_url": [event_url],
            "event_method": "POST",
        });
        let answer =
            self.request(protocol, DIAL, Method::POST, &url, Auth::Bearer(jwt), Body::Json(body)).await?;
        dialled(protocol, &answer, &[&["uuid"]])
    }

    /// Asks Plivo to place a call (`POST /v1/Account/{auth_id}/Call/`, JSON `from`, `to`,
    /// `answer_url` fetched when it is answered, `ring_url` and `hangup_url` for its progress);
    /// returns the `request_uuid` (Plivo names the call's `CallUUID` only in its callbacks).
    pub async fn plivo_dial(
        &self,
        from: &str,
        to: &str,
        answer_url: &str,
        status_url: &str,
    ) -> Result<String, ControlError> {
        let protocol = Protocol::Plivo;
        let (id, token) = self.plivo_credentials()?;
        let url = format!("{}/v1/Account/{}/Call/", base(&self.config.plivo_api_base), segment(id));
        let body = json!({
            "from": from.trim_start_matches('+'),
            "to": to.trim_start_matches('+'),
            "answer_url": answer_url,
            "answer_method": "POST",
            "ring_url": status_url,
            "ring_method": "POST",
            "hangup_url": status_url,
            "hangup_method": "POST",
        });
        let answer = self
            .request(protocol, DIAL, Method::POST, &url, Auth::Basic(id, token), Body::Json(body))
            .await?;
        dialled(protocol, &answer, &[&["request_uuid"]])
    }

    fn twilio_credentials<'a>(&'a self, start: &'a StartInfo) -> Result<(String, &'a str), ControlError> {
        let c = &self.config;
        let token = c.twilio_auth_token.as_deref().filter(|t| !t.is_empty());
        let sid = c
            .twilio_account_sid
            .as_deref()
            .filter(|s| !s.is_empty())
            .or(start.account_id.as_deref().filter(|s| !s.is_empty()));
        match (sid, token) {
            (Some(sid), Some(token)) => Ok((sid.to_string(), token)),
            _ => Err(ControlError::NotConfigured(Protocol::Twilio.as_str())),
        }
    }

    fn twilio_url(&self, account_sid: &str, call_sid: &str) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/Calls/{}.json",
            base(&self.config.twilio_api_base),
            segment(account_sid),
            segment(call_sid)
        )
    }

    fn plivo_credentials(&self) -> Result<(&str, &str), ControlError> {
        let c = &self.config;
        match (
            c.plivo_auth_id.as_deref().filter(|s| !s.is_empty()),
            c.plivo_auth_token.as_deref().filter(|s| !s.is_empty()),
        ) {
            (Some(id), Some(token)) => Ok((id, token)),
            _ => Err(ControlError::NotConfigured(Protocol::Plivo.as_str())),
        }
    }

    fn plivo_url(&self, auth_id: &str, call_uuid: &str) -> String {
        format!(
            "{}/v1/Account/{}/Call/{}/",
            base(&self.config.plivo_api_base),
            segment(auth_id),
            segment(call_uuid)
        )
    }

    /// Sends one request; any 2xx is success.
    async fn send(
        &self,
        protocol: Protocol,
        operation: &'static str,
        method: Method,
        url: &str,
        auth: Auth<'_>,
        body: Body,
    ) -> Result<(), ControlError> {
        self.request(protocol, operation, method, url, auth, body).await.map(drop)
    }

    /// Sends one request; any 2xx is success and answers the response body.
    async fn request(
        &self,
        protocol: Protocol,
        operation: &'static str,
        method: Method,
        url: &str,
        auth: Auth<'_>,
        body: Body,
    ) -> Result<String, ControlError> {
        let p = protocol.as_str();
        let mut req: RequestBuilder = self.client.request(method.clone(), url);
        req = match auth {
            Auth::Basic(user, password) => req.basic_auth(user, Some(password)),
            Auth::Bearer(token) => req.bearer_auth(token),
        };
        req = match body {
            Body::None => req,
            Body::Form(fields) => req.form(&fields),
            Body::Json(value) => req.json(&value),
        };
        let network = |e: reqwest::Error| ControlError::Network {
            protocol: p,
            operation,
            // Without the URL: it is ours, and the message stays short.
            message: e.without_url().to_string(),
        };
        let resp = req.send().await.map_err(network)?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            tracing::info!(gateway = p, operation, status = status.as_u16(), "gateway call control done");
            return Ok(text);
        }
        let body = truncate(text.trim(), ERROR_BODY_CHARS);
        tracing::warn!(gateway = p, operation, %method, status = status.as_u16(), "gateway call control refused");
        Err(ControlError::Status { protocol: p, operation, status: status.as_u16(), body })
    }
}

/// The operation name of placing a call, in errors and logs.
const DIAL: &str = "place call";

/// The call id in a gateway's answer to a dial request: the first non-empty string at one of
/// `paths` (each a list of JSON object keys), else a [`ControlError::Status`] saying so.
fn dialled(protocol: Protocol, answer: &str, paths: &[&[&str]]) -> Result<String, ControlError> {
    let value: serde_json::Value = serde_json::from_str(answer).unwrap_or_default();
    let found = paths.iter().find_map(|path| {
        let v = path.iter().try_fold(&value, |v, key| v.get(*key))?;
        v.as_str().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
    });
    match found {
        Some(id) => {
            tracing::info!(gateway = protocol.as_str(), gateway_call_id = %id, "outbound call placed");
            Ok(id)
        }
        None => Err(ControlError::BadAnswer {
            protocol: protocol.as_str(),
            operation: DIAL,
            message: format!("its answer carried no call id ({})", paths[0].join(".")),
        }),
    }
}

/// The gateway call id of the stream, or [`ControlError::NoCallId`].
fn call_id(protocol: Protocol, start: &StartInfo) -> Result<&str, ControlError> {
    start
        .call_id
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or(ControlError::NoCallId(protocol.as_str()))
}

/// A base URL without its trailing slash.
fn base(url: &str) -> &str {
    url.trim_end_matches('/')
}

/// `wss://x` / `ws://x` / `x` → the `https://` / `http://` form gateways fetch over.
fn http_base(public: &str) -> String {
    if let Some(rest) = public.strip_prefix("wss://") {
        format!("https://{rest}")
    } else if let Some(rest) = public.strip_prefix("ws://") {
        format!("http://{rest}")
    } else if public.starts_with("https://") || public.starts_with("http://") {
        public.to_string()
    } else {
        format!("https://{public}")
    }
}

/// Percent-encodes a path segment (ids are normally URL-safe already; Telnyx's contain `:`).
pub(crate) fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':' | b'@') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Escapes text for XML content and attribute values.
pub(crate) fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// At most `max` characters of `s`, with `…` when cut.
fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

/// A configured credential: present and not empty, else the protocol is not configured.
fn secret<'a>(value: &'a Option<String>, protocol: &'static str) -> Result<&'a str, ControlError> {
    value.as_deref().filter(|v| !v.is_empty()).ok_or(ControlError::NotConfigured(protocol))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(segment("v3:abc-DEF_1.2"), "v3:abc-DEF_1.2");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
        assert_eq!(xml_escape(r#"<a&"b'>"#), "&lt;a&amp;&quot;b&apos;&gt;");
        assert_eq!(truncate("héllo", 2), "hé…");
        assert_eq!(truncate("hé", 2), "hé");
        assert_eq!(http_base("wss://x.io/p"), "https://x.io/p");
        assert_eq!(http_base("http://x.io"), "http://x.io");
        assert_eq!(http_base("x.io"), "https://x.io");
        assert_eq!(base("http://h/"), "http://h");
    }
}
