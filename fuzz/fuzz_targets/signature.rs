//! Slack's v0 signature check with fuzzed headers, body, secret and clock:
//! it never panics, accepts the correct signature inside the 5-minute
//! window, and accepts nothing else.
#![no_main]

use axum::http::{HeaderMap, HeaderValue};
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use robeing::http::slack::{MAX_SKEW, verify_signature};

fn sign(secret: &[u8], ts: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(b"v0:");
    mac.update(ts);
    mac.update(b":");
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

fuzz_target!(|data: &[u8]| {
    // Layout: now (8 bytes), then secret, timestamp and signature separated
    // by 0xFF bytes, then the body.
    if data.len() < 8 {
        return;
    }
    let now = i64::from_le_bytes(data[..8].try_into().unwrap());
    let mut parts = data[8..].splitn(4, |b| *b == 0xff);
    let (secret, ts, sig, body) = (
        parts.next().unwrap_or(b""),
        parts.next().unwrap_or(b""),
        parts.next().unwrap_or(b""),
        parts.next().unwrap_or(b""),
    );
    let mut headers = HeaderMap::new();
    let ts_value = HeaderValue::from_bytes(ts).ok();
    if let Some(v) = &ts_value {
        headers.insert("x-slack-request-timestamp", v.clone());
    }
    if let Ok(v) = HeaderValue::from_bytes(sig) {
        headers.insert("x-slack-signature", v);
    }
    let verdict = verify_signature(secret, &headers, body, now);
    let correct = sign(secret, ts, body);
    let in_window = std::str::from_utf8(ts)
        .ok()
        .and_then(|t| t.parse::<i64>().ok())
        .is_some_and(|t| now.abs_diff(t) <= MAX_SKEW.unsigned_abs());
    if verdict.is_ok() {
        // Only the exact signature (hex is case-insensitive) over these bytes, in the window.
        assert!(in_window, "accepted outside the window");
        assert!(std::str::from_utf8(sig).is_ok_and(|s| s.eq_ignore_ascii_case(&correct)), "accepted a wrong signature");
    }
    // And the correct signature, inside the window, is accepted.
    if in_window && ts_value.as_ref().is_some_and(|v| v.to_str().is_ok_and(|s| s.as_bytes() == ts)) {
        headers.insert("x-slack-signature", HeaderValue::from_str(&correct).unwrap());
        assert_eq!(verify_signature(secret, &headers, body, now), Ok(()), "refused the correct signature");
    }
});
