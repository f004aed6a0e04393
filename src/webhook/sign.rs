//! Request signing (PROTOCOLS.md §1 "Webhooks") and webhook secrets.
//!
//! Every request carries `X-Webhook-Timestamp: <unix seconds>` and
//! `X-Webhook-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>`. The HMAC
//! key is the whole secret string as shown to the customer (`whsec_…`, prefix included).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// Header carrying the signing time (unix seconds).
pub const TIMESTAMP_HEADER: &str = "x-webhook-timestamp";
/// Header carrying `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-webhook-signature";
/// Prefix of every webhook secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Random bytes behind the prefix (256 bits).
const SECRET_BYTES: usize = 32;

/// A new secret: `whsec_` and 32 random bytes, base64url without padding (43 characters).
pub fn new_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{SECRET_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The `X-Webhook-Signature` value for `body` sent at `timestamp` (unix seconds).
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a signature header in constant time (what a receiver does; used by tests and docs).
pub fn verify(secret: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else { return false };
    let Ok(sig) = hex::decode(hex_sig) else { return false };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_vector() {
        // Computed independently:
        // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac 'whsec_test'
        let sig = signature("whsec_test", 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(sig, "sha256=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789");
    }

    #[test]
    fn verify_accepts_the_signature_and_rejects_any_change() {
        let secret = new_secret();
        let body = br#"{"event":"agent.message"}"#;
        let sig = signature(&secret, 1_700_000_000, body);
        assert!(verify(&secret, 1_700_000_000, body, &sig));
        assert!(!verify(&secret, 1_700_000_001, body, &sig), "another timestamp");
        assert!(!verify(&secret, 1_700_000_000, br#"{"event":"agent.messagE"}"#, &sig), "another body");
        assert!(!verify("whsec_other", 1_700_000_000, body, &sig), "another secret");
        assert!(!verify(&secret, 1_700_000_000, body, sig.trim_start_matches("sha256=")), "no scheme");
        assert!(!verify(&secret, 1_700_000_000, body, "sha256=zz"), "not hex");
    }

    #[test]
    fn secrets_are_prefixed_random_base64url() {
        let a = new_secret();
        let b = new_secret();
        assert_ne!(a, b);
        let rest = a.strip_prefix(SECRET_PREFIX).expect("prefix");
        assert_eq!(rest.len(), 43, "{a}");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(rest).expect("base64url");
        assert_eq!(bytes.len(), SECRET_BYTES);
    }
}
