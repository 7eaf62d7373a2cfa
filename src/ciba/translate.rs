//! Reading and rewriting the OP's CIBA answers: the acknowledgement (CIBA 7.3) and the
//! token endpoint's answer (CIBA 11).
//!
//! Pure: bytes in, bytes or a classification out.

use crate::ciba::error::ErrorCode;
use crate::ciba::ids::AuthReqId;
use crate::ciba::polling::{Ack, OpVerdict};
use serde_json::Value;

/// Longest `auth_req_id` the gateway tracks; longer ones are an upstream fault.
pub const MAX_AUTH_REQ_ID: usize = 512;

/// The fields of an acknowledgement the gateway needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpAck {
    /// The OP's `auth_req_id`.
    pub auth_req_id: AuthReqId,
    /// The OP's `expires_in` in seconds.
    pub expires_in: u64,
    /// The OP's `interval` in seconds, when it sent one.
    pub interval: Option<u64>,
}

/// Reads a 200 acknowledgement; the error says what the OP got wrong.
pub fn parse_ack(v: &Value) -> Result<OpAck, String> {
    if !v.is_object() {
        return Err("the acknowledgement is not a JSON object".into());
    }
    let id = v
        .get("auth_req_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= MAX_AUTH_REQ_ID)
        .ok_or("the acknowledgement has no usable auth_req_id")?;
    let expires_in = v
        .get("expires_in")
        .and_then(positive_seconds)
        .ok_or("the acknowledgement has no positive expires_in")?;
    let interval = match v.get("interval") {
        None | Some(Value::Null) => None,
        Some(x) => Some(
            positive_seconds(x).ok_or("the acknowledgement's interval is not a positive number")?,
        ),
    };
    Ok(OpAck {
        auth_req_id: AuthReqId::new(id),
        expires_in,
        interval,
    })
}

/// Seconds as the OP wrote them: an integer, or a float rounded up, or a numeric string.
fn positive_seconds(v: &Value) -> Option<u64> {
    let n = match v {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f > 0.0).map(|f| f.ceil() as u64)),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    }?;
    (n > 0).then_some(n)
}

/// Rewrites an acknowledgement so the client sees the interval and expiry the gateway
/// enforces; every other member is kept.
pub fn rewrite_ack(v: &mut Value, ack: &Ack) {
    if let Some(obj) = v.as_object_mut() {
        obj.insert("expires_in".into(), ack.expires_in_secs().into());
        obj.insert("interval".into(), ack.interval_secs().into());
    }
}

/// Classifies the OP's answer to a CIBA token request for the poll rules.
///
/// Tokens, `access_denied` and `invalid_grant` end the request (CIBA 11); `expired_token`
/// too, remembered as such; anything else (a client error, an OP fault) teaches nothing.
pub fn classify_token_answer(status: u16, body: &Value) -> OpVerdict {
    if status == 200 {
        return OpVerdict::Ended;
    }
    let code = body
        .get("error")
        .and_then(Value::as_str)
        .and_then(ErrorCode::parse);
    match code {
        Some(ErrorCode::AuthorizationPending) => OpVerdict::Pending,
        Some(ErrorCode::SlowDown) => OpVerdict::SlowDown,
        Some(ErrorCode::AccessDenied | ErrorCode::InvalidGrant) => OpVerdict::Ended,
        Some(ErrorCode::ExpiredToken) => OpVerdict::Expired,
        _ => OpVerdict::Unclear,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The JSON value of a body, or `null` when it is not JSON (as the proxy would never pass).
    fn json(body: &[u8]) -> Value {
        serde_json::from_slice(body).unwrap_or(Value::Null)
    }

    #[test]
    fn parses_acks_with_and_without_interval() {
        let a = parse_ack(&json(br#"{"auth_req_id":"abc","expires_in":600}"#)).unwrap();
        assert_eq!(a.auth_req_id.as_str(), "abc");
        assert_eq!((a.expires_in, a.interval), (600, None));
        let a = parse_ack(&json(
            br#"{"auth_req_id":"abc","expires_in":"120","interval":2.5}"#,
        ))
        .unwrap();
        assert_eq!((a.expires_in, a.interval), (120, Some(3)));
        // Odd but readable values: huge numbers saturate (the policy caps them later),
        // fractions round up, an explicit null interval is no interval.
        for (body, want) in [
            (
                &br#"{"auth_req_id":"a","expires_in":1e308}"#[..],
                (u64::MAX, None),
            ),
            (
                br#"{"auth_req_id":"a","expires_in":18446744073709551616}"#,
                (u64::MAX, None),
            ),
            (
                br#"{"auth_req_id":"a","expires_in":0.2,"interval":0.2}"#,
                (1, Some(1)),
            ),
            (
                br#"{"auth_req_id":"a","expires_in":" 60 ","interval":null}"#,
                (60, None),
            ),
        ] {
            let a = parse_ack(&json(body)).unwrap();
            assert_eq!((a.expires_in, a.interval), want);
        }
    }

    #[test]
    fn refuses_broken_acks() {
        for body in [
            &b"<html>"[..],
            br#"{"expires_in":600}"#,
            br#"{"auth_req_id":"","expires_in":600}"#,
            br#"{"auth_req_id":"a","expires_in":0}"#,
            br#"{"auth_req_id":"a","expires_in":-5}"#,
            br#"{"auth_req_id":"a"}"#,
            br#"{"auth_req_id":"a","expires_in":60,"interval":"soon"}"#,
            br#"{"auth_req_id":7,"expires_in":60}"#,
            br#"{"auth_req_id":"a","expires_in":60,"interval":0}"#,
            br#"{"auth_req_id":"a","expires_in":60,"interval":-1}"#,
            br#"{"auth_req_id":"a","expires_in":"-60"}"#,
            br#"{"auth_req_id":"a","expires_in":"1e3"}"#,
            br#"{"auth_req_id":"a","expires_in":[60]}"#,
            br#"{"auth_req_id":"a","expires_in":true}"#,
            br#"{"auth_req_id":["a"],"expires_in":60}"#,
            br#"[{"auth_req_id":"a","expires_in":60}]"#,
        ] {
            assert!(
                parse_ack(&json(body)).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let long = format!(r#"{{"auth_req_id":"{}","expires_in":60}}"#, "a".repeat(600));
        assert!(parse_ack(&json(long.as_bytes())).is_err());
    }

    #[test]
    fn rewrite_sets_enforced_values_and_keeps_the_rest() {
        let ack = Ack {
            interval: Duration::from_secs(5),
            expires_in: Duration::from_secs(300),
        };
        let mut v = json(br#"{"auth_req_id":"x","expires_in":900,"extra":true}"#);
        rewrite_ack(&mut v, &ack);
        assert_eq!(v["interval"], 5);
        assert_eq!(v["expires_in"], 300);
        assert_eq!(v["auth_req_id"], "x");
        assert_eq!(v["extra"], true);
    }

    #[test]
    fn classifies_token_answers() {
        use OpVerdict::*;
        let cases: [(u16, &[u8], OpVerdict); 8] = [
            (200, br#"{"access_token":"t"}"#, Ended),
            (400, br#"{"error":"authorization_pending"}"#, Pending),
            (400, br#"{"error":"slow_down"}"#, SlowDown),
            (400, br#"{"error":"access_denied"}"#, Ended),
            (400, br#"{"error":"expired_token"}"#, Expired),
            (400, br#"{"error":"invalid_grant"}"#, Ended),
            (401, br#"{"error":"invalid_client"}"#, Unclear),
            (500, b"oops", Unclear),
        ];
        for (status, body, expect) in cases {
            assert_eq!(
                classify_token_answer(status, &json(body)),
                expect,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
