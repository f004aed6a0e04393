//! Helpers shared by the wire protocols: JSON parsing with protocol-level error mapping, base64,
//! hand-written JSON output, lenient number fields and small start-message utilities.
//!
//! Hot-path rule: inbound media is parsed into small borrowed structs (`Cow<str>` borrows unless the
//! JSON string has escapes) and outbound media is written into one pre-sized `String`; no
//! `serde_json::Value` is built for audio.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use base64::Engine as _;
use serde::de::{self, Deserialize, Deserializer, Visitor};

use super::{ProtocolError, WsMessage};

/// The base64 engine every JSON protocol uses (RFC 4648 alphabet, padded).
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Parses one JSON text frame into `T`, mapping failures to protocol errors: syntax errors are
/// [`ProtocolError::NotJson`]; type errors are [`ProtocolError::BadField`] naming the event (when
/// it can be read) and the offending field, which must be one of `fields` (else `"message"`).
///
/// The happy path is a single plain `serde_json` pass; only a failure re-parses to find the path.
pub(crate) fn parse_json<'a, T: Deserialize<'a>>(
    text: &'a str,
    fields: &[&'static str],
) -> Result<T, ProtocolError> {
    use serde::de::IgnoredAny;
    // Derived structs also accept JSON arrays (positional fields); a frame must be an object.
    if !text.trim_start().starts_with('{') {
        return Err(match serde_json::from_str::<IgnoredAny>(text) {
            Err(e) => ProtocolError::NotJson(e.to_string()),
            Ok(_) => bad_field("message", "event"),
        });
    }
    match serde_json::from_str::<T>(text) {
        Ok(v) => Ok(v),
        Err(e) if !e.is_data() => Err(ProtocolError::NotJson(e.to_string())),
        Err(_) => {
            // A type error met before a syntax error further on: still not JSON.
            if let Err(e) = serde_json::from_str::<IgnoredAny>(text) {
                return Err(ProtocolError::NotJson(e.to_string()));
            }
            let de = &mut serde_json::Deserializer::from_str(text);
            let field = match serde_path_to_error::deserialize::<_, T>(de) {
                Err(e) => static_field(&e.path().to_string(), fields),
                Ok(_) => "message",
            };
            Err(bad_field(event_name(text).as_deref().unwrap_or("message"), field))
        }
    }
}

/// Decodes one message of a JSON-text protocol: `Ok(None)` for frames that carry nothing
/// (ping/pong/close) and for events this protocol does not know, even malformed ones (forward
/// compatibility); binary is `UnexpectedBinary`; a known event with a bad field is an error.
pub(crate) fn parse_message<'a, T: Deserialize<'a>>(
    msg: &'a WsMessage,
    protocol: &'static str,
    fields: &[&'static str],
    is_known: fn(&str) -> bool,
) -> Result<Option<T>, ProtocolError> {
    let text = match msg {
        WsMessage::Text(t) => t.as_str(),
        WsMessage::Binary(_) => return Err(ProtocolError::UnexpectedBinary(protocol)),
        _ => return Ok(None),
    };
    match parse_json(text, fields) {
        Ok(m) => Ok(Some(m)),
        Err(ProtocolError::BadField { event, .. }) if !is_known(&event) && event != "message" => Ok(None),
        Err(e) => Err(e),
    }
}

/// The `event` member of a JSON object, if there is one and it is a string (error paths only).
pub(crate) fn event_name(text: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Ev<'a> {
        #[serde(borrow)]
        event: Option<Cow<'a, str>>,
    }
    serde_json::from_str::<Ev>(text).ok()?.event.map(Cow::into_owned)
}

/// Maps the last segment of a serde path (`media.payload`, `start.mediaFormat.sampleRate`) to the
/// matching `'static` field name.
fn static_field(path: &str, fields: &[&'static str]) -> &'static str {
    let last = path.rsplit('.').find(|seg| !seg.starts_with('[') && *seg != "?").unwrap_or("");
    fields.iter().copied().find(|f| *f == last).unwrap_or("message")
}

pub(crate) fn bad_field(event: &str, field: &'static str) -> ProtocolError {
    ProtocolError::BadField { event: event.to_owned(), field }
}

/// Decodes a base64 payload into a vector allocated once at the decoded size.
pub(crate) fn decode_b64(payload: &str) -> Result<Vec<u8>, ProtocolError> {
    let mut out = Vec::with_capacity(base64::decoded_len_estimate(payload.len()));
    B64.decode_vec(payload, &mut out).map_err(|_| ProtocolError::BadBase64)?;
    Ok(out)
}

/// Length of `bytes` once base64-encoded (padded).
pub(crate) fn b64_len(bytes: &[u8]) -> usize {
    base64::encoded_len(bytes.len(), true).unwrap_or(0)
}

/// Appends `bytes` base64-encoded to `out`.
pub(crate) fn push_b64(out: &mut String, bytes: &[u8]) {
    B64.encode_string(bytes, out);
}

/// Appends `s` as a JSON string literal (with quotes), escaping as RFC 8259 requires.
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0..=0x1f => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                out.push_str("\\u00");
                out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
                out.push(char::from(b"0123456789abcdef"[usize::from(b & 0xf)]));
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// A text websocket message from a finished JSON string.
pub(crate) fn text(s: String) -> WsMessage {
    WsMessage::Text(s.into())
}

/// A JSON object `{"event":EVENT,KEY:VALUE,…}` with string values, for the small control messages.
pub(crate) fn json_event(event: &str, pairs: &[(&str, &str)]) -> WsMessage {
    let mut s = String::with_capacity(
        16 + event.len() + pairs.iter().map(|(k, v)| k.len() + v.len() + 8).sum::<usize>(),
    );
    s.push_str("{\"event\":");
    push_json_str(&mut s, event);
    for (k, v) in pairs {
        s.push(',');
        push_json_str(&mut s, k);
        s.push(':');
        push_json_str(&mut s, v);
    }
    s.push('}');
    text(s)
}

/// A DTMF digit: exactly one of `0-9 * # A-D` (lower-case letters are accepted and upper-cased).
pub(crate) fn parse_digit(event: &str, digit: Option<&str>) -> Result<char, ProtocolError> {
    let mut chars = digit.unwrap_or("").chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_digit() || c == '*' || c == '#' => Ok(c),
        (Some(c), None) if matches!(c.to_ascii_uppercase(), 'A'..='D') => Ok(c.to_ascii_uppercase()),
        _ => Err(bad_field(event, "digit")),
    }
}

/// Whether a media `track` value is the caller's audio (`inbound`, `inbound_track`, or absent).
pub(crate) fn is_inbound(track: Option<&str>) -> bool {
    matches!(track, None | Some("inbound") | Some("inbound_track"))
}

/// A fresh stream id for protocols whose gateway gives none: `PREFIX-<ulid>`.
pub(crate) fn new_stream_id(prefix: &str) -> String {
    format!("{prefix}-{}", ulid::Ulid::new())
}

/// The string members of a JSON object, except `skip`; other value types are left out.
pub(crate) fn string_fields(
    obj: &serde_json::Map<String, serde_json::Value>,
    skip: &[&str],
    into: &mut HashMap<String, String>,
) {
    for (k, v) in obj {
        if let (false, Some(s)) = (skip.contains(&k.as_str()), v.as_str()) {
            into.insert(k.clone(), s.to_owned());
        }
    }
}

/// Deserializes an unsigned number sent either as a JSON number or as a decimal string
/// (Twilio and Telnyx send `"chunk": "2"`, `"sample_rate": 8000`).
pub(crate) fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an unsigned integer or a decimal string")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            u64::try_from(v).map(Some).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            if v >= 0.0 && v.fract() == 0.0 && v <= u32::MAX as f64 {
                Ok(Some(v as u64))
            } else {
                Err(E::invalid_value(de::Unexpected::Float(v), &self))
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            v.trim().parse().map(Some).map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_string_escaping_round_trips() {
        let nasty = "a\"b\\c\nd\te\u{1}f/ü😀";
        let mut s = String::new();
        push_json_str(&mut s, nasty);
        assert_eq!(serde_json::from_str::<String>(&s).unwrap(), nasty);
    }

    #[test]
    fn digits() {
        assert_eq!(parse_digit("dtmf", Some("7")), Ok('7'));
        assert_eq!(parse_digit("dtmf", Some("#")), Ok('#'));
        assert_eq!(parse_digit("dtmf", Some("b")), Ok('B'));
        for bad in [None, Some(""), Some("12"), Some("x")] {
            assert_eq!(parse_digit("dtmf", bad), Err(bad_field("dtmf", "digit")));
        }
    }

    #[test]
    fn base64_round_trip_and_error() {
        let mut s = String::new();
        push_b64(&mut s, &[1, 2, 3, 250]);
        assert_eq!(s.len(), b64_len(&[1, 2, 3, 250]));
        assert_eq!(decode_b64(&s).unwrap(), vec![1, 2, 3, 250]);
        assert_eq!(decode_b64("not base64!"), Err(ProtocolError::BadBase64));
    }

    #[test]
    fn parse_errors_name_the_field() {
        #[derive(serde::Deserialize, Debug)]
        struct M {
            #[allow(dead_code)]
            event: Option<String>,
            #[allow(dead_code)]
            media: Option<Inner>,
        }
        #[derive(serde::Deserialize, Debug)]
        struct Inner {
            #[allow(dead_code)]
            payload: Option<String>,
        }
        let err = parse_json::<M>(r#"{"event":"media","media":{"payload":5}}"#, &["payload"]).unwrap_err();
        assert_eq!(err, bad_field("media", "payload"));
        assert!(matches!(parse_json::<M>("{nope", &[]), Err(ProtocolError::NotJson(_))));
        assert!(matches!(parse_json::<M>(r#"{"media":5,"#, &[]), Err(ProtocolError::NotJson(_))));
        assert!(matches!(parse_json::<M>("[1,", &[]), Err(ProtocolError::NotJson(_))));
        assert_eq!(parse_json::<M>("[1]", &[]).unwrap_err(), bad_field("message", "event"));
        assert_eq!(parse_json::<M>(r#"{"event":5}"#, &["event"]).unwrap_err(), bad_field("message", "event"));
    }
}
