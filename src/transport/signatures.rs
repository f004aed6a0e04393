//! Request signatures of the Telnyx and Vonage webhooks (Twilio's are in
//! [`answer`](super::answer)), checked when the matching key is configured.
//!
//! | gateway | headers | what is signed | key |
//! |---|---|---|---|
//! | Telnyx | `telnyx-signature-ed25519` (base64, 64 bytes), `telnyx-timestamp` (Unix s) | `"{timestamp}\|{raw body}"`, Ed25519 | the account's public key (base64, 32 bytes): `telnyx_public_key` |
//! | Vonage | `Authorization: Bearer <JWT>` | the JWT, HS256; its `payload_hash` claim is the hex SHA-256 of the raw body, `iat` when it was signed | the account's signature secret: `vonage_signature_secret` |
//! | Plivo (V3) | `X-Plivo-Signature-V3` (base64, possibly several comma-separated), `X-Plivo-Signature-V3-Nonce` | `"{url}.{nonce}"`, HMAC-SHA256, where `url` is the called URL without its query, then `?` and its query parameters sorted (`k=v` joined by `&`), and for a `POST` with form parameters a `.` (when there was a query) and the form parameters sorted, each `kv`, concatenated | the auth token: `plivo_auth_token` |
//!
//! Telnyx and Vonage are refused when the signing time is more than [`TOLERANCE_SECS`] away from now (a
//! replayed request), when a header is missing, or when anything does not verify.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Header carrying Telnyx's Ed25519 signature.
pub const TELNYX_SIGNATURE_HEADER: &str = "telnyx-signature-ed25519";
/// Header carrying the Unix time Telnyx signed at.
pub const TELNYX_TIMESTAMP_HEADER: &str = "telnyx-timestamp";
/// How far a signing time may be from now, seconds.
pub const TOLERANCE_SECS: i64 = 300;

/// Why a signed request was refused (said in the 403 and the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("signature does not verify")]
    Mismatch,
    #[error("signed more than 300 s from now (replayed?)")]
    Stale,
    #[error("payload_hash does not match the body")]
    BodyChanged,
}

/// Checks Telnyx's Ed25519 signature of `body` (the raw bytes as received) at `now` (Unix s).
pub fn telnyx(
    public_key_b64: &str,
    signature_b64: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), Refused> {
    let signature_b64 = signature_b64.ok_or(Refused::Missing(TELNYX_SIGNATURE_HEADER))?;
    let timestamp = timestamp.ok_or(Refused::Missing(TELNYX_TIMESTAMP_HEADER))?.trim();
    let at: i64 = timestamp.parse().map_err(|_| Refused::Malformed(TELNYX_TIMESTAMP_HEADER))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let signature =
        b64.decode(signature_b64.trim()).map_err(|_| Refused::Malformed(TELNYX_SIGNATURE_HEADER))?;
    let key = b64.decode(public_key_b64.trim()).map_err(|_| Refused::Malformed("telnyx_public_key"))?;
    if key.len() != 32 {
        return Err(Refused::Malformed("telnyx_public_key"));
    }
    let mut signed = Vec::with_capacity(timestamp.len() + 1 + body.len());
    signed.extend_from_slice(timestamp.as_bytes());
    signed.push(b'|');
    signed.extend_from_slice(body);
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &key)
        .verify(&signed, &signature)
        .map_err(|_| Refused::Mismatch)?;
    // Checked after the signature, so a forged timestamp reads as a forgery, not as stale.
    if (now - at).abs() > TOLERANCE_SECS {
        return Err(Refused::Stale);
    }
    Ok(())
}

/// Checks Vonage's signed-webhook JWT from the `Authorization` header value, against `body`
/// (raw bytes; an empty body — a `GET` — needs no `payload_hash`) at `now` (Unix s).
pub fn vonage(secret: &str, authorization: Option<&str>, body: &[u8], now: i64) -> Result<(), Refused> {
    let auth = authorization.ok_or(Refused::Missing("Authorization"))?.trim();
    let token = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("bearer "))
        .ok_or(Refused::Malformed("Authorization (expected Bearer <JWT>)"))?
        .trim();
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refused::Malformed("JWT"));
    };
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let json = |part: &str| -> Result<Value, Refused> {
        let bytes = b64.decode(part).map_err(|_| Refused::Malformed("JWT"))?;
        serde_json::from_slice(&bytes).map_err(|_| Refused::Malformed("JWT"))
    };
    if json(header)?.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(Refused::Malformed("JWT (alg must be HS256)"));
    }
    let signature = b64.decode(signature).map_err(|_| Refused::Malformed("JWT"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(&token.as_bytes()[..header.len() + 1 + claims.len()]);
    mac.verify_slice(&signature).map_err(|_| Refused::Mismatch)?;
    let claims = json(claims)?;
    let iat = claims.get("iat").and_then(Value::as_i64).ok_or(Refused::Missing("iat claim"))?;
    if (now - iat).abs() > TOLERANCE_SECS {
        return Err(Refused::Stale);
    }
    if let Some(exp) = claims.get("exp").and_then(Value::as_i64) {
        if now > exp + TOLERANCE_SECS {
            return Err(Refused::Stale);
        }
    }
    match claims.get("payload_hash").and_then(Value::as_str) {
        Some(hash) if !hash.eq_ignore_ascii_case(&hex::encode(Sha256::digest(body))) => {
            Err(Refused::BodyChanged)
        }
        None if !body.is_empty() => Err(Refused::Missing("payload_hash claim")),
        _ => Ok(()),
    }
}

/// Header carrying Plivo's V3 signature(s).
pub const PLIVO_SIGNATURE_HEADER: &str = "x-plivo-signature-v3";
/// Header carrying the nonce Plivo signed with.
pub const PLIVO_NONCE_HEADER: &str = "x-plivo-signature-v3-nonce";

/// What Plivo signs for a request to `url` (as called, query included) with form `body`
/// (empty for a `GET`), before the `.{nonce}`.
pub fn plivo_signed_url(url: &str, post: bool, body: &[u8]) -> String {
    use std::collections::BTreeMap;
    fn sorted(pairs: form_urlencoded::Parse<'_>) -> BTreeMap<String, Vec<String>> {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in pairs {
            map.entry(k.into_owned()).or_default().push(v.into_owned());
        }
        map.values_mut().for_each(|v| v.sort());
        map
    }
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let query = sorted(form_urlencoded::parse(query.as_bytes()));
    let query: Vec<String> =
        query.iter().flat_map(|(k, vs)| vs.iter().map(move |v| format!("{k}={v}"))).collect();
    let query = query.join("&");
    let form = if post { sorted(form_urlencoded::parse(body)) } else { BTreeMap::new() };
    let mut out = base.to_string();
    if !query.is_empty() || !form.is_empty() {
        out.push('?');
        out.push_str(&query);
    }
    if !query.is_empty() && !form.is_empty() {
        out.push('.');
    }
    for (k, vs) in &form {
        for v in vs {
            out.push_str(k);
            out.push_str(v);
        }
    }
    out
}

/// Checks Plivo's V3 signature of a request to `url` (the public URL it called, query
/// included) with form `body`.
pub fn plivo(
    auth_token: &str,
    signatures: Option<&str>,
    nonce: Option<&str>,
    url: &str,
    post: bool,
    body: &[u8],
) -> Result<(), Refused> {
    let signatures = signatures.ok_or(Refused::Missing("X-Plivo-Signature-V3"))?;
    let nonce = nonce.ok_or(Refused::Missing("X-Plivo-Signature-V3-Nonce"))?;
    let signed = format!("{}.{nonce}", plivo_signed_url(url, post, body));
    let b64 = base64::engine::general_purpose::STANDARD;
    let matches = signatures.split(',').filter_map(|s| b64.decode(s.trim()).ok()).any(|sig| {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key length");
        mac.update(signed.as_bytes());
        mac.verify_slice(&sig).is_ok()
    });
    if matches {
        Ok(())
    } else {
        Err(Refused::Mismatch)
    }
}

/// A Vonage-style signed-webhook JWT over `body` signed at `iat` (tests and tools).
pub fn vonage_token(secret: &str, body: &[u8], iat: i64) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "iat": iat,
        "jti": format!("{iat:x}"),
        "iss": "Vonage",
        "payload_hash": hex::encode(Sha256::digest(body)),
    });
    let claims = b64.encode(claims.to_string());
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{header}.{claims}").as_bytes());
    format!("{header}.{claims}.{}", b64.encode(mac.finalize().into_bytes()))
}

/// Routes whose requests Telnyx signs.
const TELNYX_ROUTES: [&str; 2] = ["/telnyx/voice", "/telnyx/status"];
/// Routes whose requests Vonage signs.
const VONAGE_ROUTES: [&str; 2] = ["/vonage/answer", "/vonage/events"];
/// Routes whose requests Plivo signs.
const PLIVO_ROUTES: [&str; 4] = ["/plivo/answer", "/plivo/status", "/plivo/outbound", "/plivo/transfer"];

/// Middleware on the gateway webhook routes: with `telnyx_public_key` / `vonage_signature_secret`
/// / `plivo_auth_token` configured, a Telnyx / Vonage / Plivo webhook whose signature does not
/// verify is refused with 403 (and reaches no handler, so nothing is created or changed);
/// without them it passes unchecked.
pub async fn check(State(state): State<crate::api::AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let gateways = &state.config().gateways;
    let telnyx_key = gateways.telnyx_public_key.clone().filter(|_| TELNYX_ROUTES.contains(&path));
    let vonage_secret = gateways.vonage_signature_secret.clone().filter(|_| VONAGE_ROUTES.contains(&path));
    let plivo_token =
        gateways.plivo_auth_token.clone().filter(|t| !t.is_empty() && PLIVO_ROUTES.contains(&path));
    if telnyx_key.is_none() && vonage_secret.is_none() && plivo_token.is_none() {
        return next.run(req).await;
    }
    let route = path.to_string();
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, crate::api::MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return super::answer::detail(StatusCode::PAYLOAD_TOO_LARGE, "body too large or unreadable")
        }
    };
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let (gateway, verdict) = match (telnyx_key, vonage_secret, plivo_token) {
        (Some(key), _, _) => (
            "telnyx",
            telnyx(&key, header(TELNYX_SIGNATURE_HEADER), header(TELNYX_TIMESTAMP_HEADER), &body, unix_now()),
        ),
        (None, Some(secret), _) => ("vonage", vonage(&secret, header("authorization"), &body, unix_now())),
        (None, None, Some(token)) => {
            let public = state.config().public_url.clone();
            let Some(base) =
                super::answer::PublicBase::of_request(public.as_deref(), &parts.headers, &parts.uri)
            else {
                return super::answer::missing_host();
            };
            let path_and_query = parts.uri.path_and_query().map_or(parts.uri.path(), |pq| pq.as_str());
            let url = format!("{}{path_and_query}", base.http());
            let post = parts.method == axum::http::Method::POST;
            (
                "plivo",
                plivo(&token, header(PLIVO_SIGNATURE_HEADER), header(PLIVO_NONCE_HEADER), &url, post, &body),
            )
        }
        (None, None, None) => unreachable!("checked above"),
    };
    if let Err(why) = verdict {
        tracing::warn!(route, gateway, %why, "gateway webhook refused: signature check failed");
        return super::answer::detail(StatusCode::FORBIDDEN, format!("{gateway} webhook signature: {why}"));
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    const NOW: i64 = 1_800_000_000;

    fn keypair() -> Ed25519KeyPair {
        Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]).unwrap()
    }

    fn telnyx_sign(kp: &Ed25519KeyPair, ts: i64, body: &[u8]) -> String {
        let mut msg = format!("{ts}|").into_bytes();
        msg.extend_from_slice(body);
        base64::engine::general_purpose::STANDARD.encode(kp.sign(&msg).as_ref())
    }

    #[test]
    fn telnyx_accepts_its_signature_and_refuses_every_change() {
        let kp = keypair();
        let key = base64::engine::general_purpose::STANDARD.encode(kp.public_key().as_ref());
        let body = b"CallSid=v3:abc&To=%2B15550100";
        let sig = telnyx_sign(&kp, NOW, body);
        let ts = NOW.to_string();
        assert_eq!(telnyx(&key, Some(&sig), Some(&ts), body, NOW + 10), Ok(()));
        assert_eq!(
            telnyx(&key, Some(&sig), Some(&ts), b"CallSid=v3:abd&To=%2B15550100", NOW),
            Err(Refused::Mismatch)
        );
        assert_eq!(telnyx(&key, Some(&sig), Some(&(NOW + 1).to_string()), body, NOW), Err(Refused::Mismatch));
        assert_eq!(telnyx(&key, Some(&sig), Some(&ts), body, NOW + TOLERANCE_SECS + 1), Err(Refused::Stale));
        assert_eq!(telnyx(&key, None, Some(&ts), body, NOW), Err(Refused::Missing(TELNYX_SIGNATURE_HEADER)));
        assert_eq!(telnyx(&key, Some(&sig), None, body, NOW), Err(Refused::Missing(TELNYX_TIMESTAMP_HEADER)));
        assert_eq!(
            telnyx(&key, Some("%%%"), Some(&ts), body, NOW),
            Err(Refused::Malformed(TELNYX_SIGNATURE_HEADER))
        );
        let other = Ed25519KeyPair::from_seed_unchecked(&[8u8; 32]).unwrap();
        let other_key = base64::engine::general_purpose::STANDARD.encode(other.public_key().as_ref());
        assert_eq!(telnyx(&other_key, Some(&sig), Some(&ts), body, NOW), Err(Refused::Mismatch));
        assert_eq!(
            telnyx("c2hvcnQ=", Some(&sig), Some(&ts), body, NOW),
            Err(Refused::Malformed("telnyx_public_key"))
        );
    }

    /// The canonical strings, spelled out by hand from Plivo's description.
    #[test]
    fn plivo_signs_the_sorted_url_and_form() {
        let url = "https://h.example/plivo/outbound?token=t%2B1&callId=c1";
        assert_eq!(plivo_signed_url(url, false, b""), "https://h.example/plivo/outbound?callId=c1&token=t+1");
        assert_eq!(
            plivo_signed_url(url, true, b"To=%2B1555&CallUUID=u1&From=1"),
            "https://h.example/plivo/outbound?callId=c1&token=t+1.CallUUIDu1From1To+1555"
        );
        assert_eq!(
            plivo_signed_url("https://h.example/plivo/status", true, b"b=2&a=1&a=0"),
            "https://h.example/plivo/status?a0a1b2"
        );
        assert_eq!(
            plivo_signed_url("https://h.example/plivo/status", true, b""),
            "https://h.example/plivo/status"
        );

        let body = b"CallUUID=u1&CallStatus=busy";
        let mut mac = Hmac::<Sha256>::new_from_slice(b"tok").unwrap();
        mac.update(b"https://h.example/plivo/status?CallStatusbusyCallUUIDu1.n0nce");
        let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let url = "https://h.example/plivo/status";
        assert_eq!(plivo("tok", Some(&sig), Some("n0nce"), url, true, body), Ok(()));
        assert_eq!(plivo("tok", Some(&format!("bogus,{sig}")), Some("n0nce"), url, true, body), Ok(()));
        assert_eq!(plivo("tok", Some(&sig), Some("other"), url, true, body), Err(Refused::Mismatch));
        assert_eq!(plivo("tok2", Some(&sig), Some("n0nce"), url, true, body), Err(Refused::Mismatch));
        assert_eq!(
            plivo("tok", Some(&sig), Some("n0nce"), url, true, b"CallUUID=u1&CallStatus=completed"),
            Err(Refused::Mismatch)
        );
        assert_eq!(
            plivo("tok", None, Some("n0nce"), url, true, body),
            Err(Refused::Missing("X-Plivo-Signature-V3"))
        );
    }

    #[test]
    fn vonage_accepts_its_token_and_refuses_every_change() {
        let body = br#"{"uuid":"u1","status":"answered"}"#;
        let token = vonage_token("s3cret", body, NOW);
        let auth = format!("Bearer {token}");
        assert_eq!(vonage("s3cret", Some(&auth), body, NOW + 5), Ok(()));
        assert_eq!(vonage("other", Some(&auth), body, NOW), Err(Refused::Mismatch));
        assert_eq!(
            vonage("s3cret", Some(&auth), br#"{"uuid":"u2","status":"answered"}"#, NOW),
            Err(Refused::BodyChanged)
        );
        assert_eq!(vonage("s3cret", Some(&auth), body, NOW + TOLERANCE_SECS + 1), Err(Refused::Stale));
        assert_eq!(vonage("s3cret", None, body, NOW), Err(Refused::Missing("Authorization")));
        assert_eq!(
            vonage("s3cret", Some(&token), body, NOW),
            Err(Refused::Malformed("Authorization (expected Bearer <JWT>)"))
        );
        // A claim changed after signing.
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        parts[1] = b64.encode(
            serde_json::json!({"iat": NOW, "payload_hash": hex::encode(Sha256::digest(b"x"))}).to_string(),
        );
        assert_eq!(
            vonage("s3cret", Some(&format!("Bearer {}", parts.join("."))), b"x", NOW),
            Err(Refused::Mismatch)
        );
        // "none" is not an algorithm we take.
        parts[0] = b64.encode(br#"{"alg":"none"}"#);
        assert_eq!(
            vonage("s3cret", Some(&format!("Bearer {}", parts.join("."))), b"x", NOW),
            Err(Refused::Malformed("JWT (alg must be HS256)"))
        );
        // A GET (no body) is signed too, with the empty body's hash.
        let get = vonage_token("s3cret", b"", NOW);
        assert_eq!(vonage("s3cret", Some(&format!("Bearer {get}")), b"", NOW), Ok(()));
    }
}
