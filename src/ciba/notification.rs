//! The CIBA ping callback (CIBA Core 10.2) as rules: what the notification says, what the
//! client's answer means, and how long to wait before trying again. Sending it is
//! `edge/notify.rs`.

use crate::ciba::ids::AuthReqId;
use std::time::Duration;

/// The notification body, exactly `{"auth_req_id":"..."}` (CIBA 10.2: nothing else), the id
/// escaped as JSON.
pub fn body(auth_req_id: &AuthReqId) -> String {
    #[derive(serde::Serialize)]
    struct Ping<'a> {
        auth_req_id: &'a str,
    }
    serde_json::to_string(&Ping {
        auth_req_id: auth_req_id.as_str(),
    })
    .expect("a struct of one string serializes")
}

/// What one answer from the client's notification endpoint means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: delivered (CIBA 10.2 expects 204; 200 with a body is accepted, the body ignored).
    Delivered,
    /// Refused for good, not retried: 401/403 (the client does not accept this token;
    /// another try would send the same one), any other 4xx, a redirect (never followed:
    /// following it would let the client's endpoint send the gateway's request, with its
    /// bearer token, anywhere), and a status that is no final answer.
    Refused,
    /// 5xx: the client's side failed; tried again after a pause.
    Retry,
}

/// The verdict on a final HTTP status from the notification endpoint.
pub fn verdict(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        500..=599 => Verdict::Retry,
        _ => Verdict::Refused,
    }
}

/// Pauses between tries: exponential from `first`, doubling, at most `cap`, with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The pause after the first failed try (before jitter).
    pub first: Duration,
    /// The longest pause.
    pub cap: Duration,
}

impl Backoff {
    /// The pause after failed try number `retry` (0 for the first), given `jitter` in
    /// [0, 1]: between half and all of `min(cap, first * 2^retry)` ("equal jitter"), so
    /// the pings of many requests that failed together do not come back together, and
    /// no pause is shorter than half its step.
    pub fn pause(&self, retry: u32, jitter: f64) -> Duration {
        let step = self
            .first
            .checked_mul(1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(self.cap)
            .min(self.cap);
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        step / 2 + (step / 2).mul_f64(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_the_id_alone_escaped_as_json() {
        assert_eq!(
            body(&AuthReqId::new("1c266114-a1be-4252-8ad1-04986c5b9ac1")),
            r#"{"auth_req_id":"1c266114-a1be-4252-8ad1-04986c5b9ac1"}"#
        );
        assert_eq!(
            body(&AuthReqId::new("a\"b\\c\n\u{1}</script>é")),
            r#"{"auth_req_id":"a\"b\\c\n\u0001</script>é"}"#
        );
    }

    #[test]
    fn answers_and_what_they_mean() {
        for (status, want) in [
            (200, Verdict::Delivered),
            (202, Verdict::Delivered),
            (204, Verdict::Delivered),
            (299, Verdict::Delivered),
            (100, Verdict::Refused),
            (101, Verdict::Refused),
            (301, Verdict::Refused),
            (302, Verdict::Refused),
            (307, Verdict::Refused),
            (308, Verdict::Refused),
            (400, Verdict::Refused),
            (401, Verdict::Refused),
            (403, Verdict::Refused),
            (404, Verdict::Refused),
            (429, Verdict::Refused),
            (500, Verdict::Retry),
            (502, Verdict::Retry),
            (503, Verdict::Retry),
            (599, Verdict::Retry),
            (600, Verdict::Refused),
        ] {
            assert_eq!(verdict(status), want, "{status}");
        }
    }

    #[test]
    fn pauses_double_up_to_the_cap_with_bounded_jitter() {
        let b = Backoff {
            first: Duration::from_millis(500),
            cap: Duration::from_secs(30),
        };
        let ms = |d: Duration| d.as_millis();
        // Without jitter: half of each step; with full jitter: the whole step.
        let steps = [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000];
        for (retry, step) in steps.iter().enumerate() {
            assert_eq!(ms(b.pause(retry as u32, 1.0)), *step, "retry {retry}");
            assert_eq!(ms(b.pause(retry as u32, 0.0)), step / 2, "retry {retry}");
            let mid = ms(b.pause(retry as u32, 0.5));
            assert!(mid > step / 2 && mid < *step, "retry {retry}: {mid}");
        }
        // Huge counts and odd jitter neither overflow nor escape the bounds.
        for retry in [31, 32, 64, 1000, u32::MAX] {
            assert_eq!(b.pause(retry, 1.0), b.cap);
        }
        assert_eq!(b.pause(0, f64::NAN), Duration::from_millis(250));
        assert_eq!(b.pause(0, 7.0), Duration::from_millis(500));
        assert_eq!(b.pause(0, -1.0), Duration::from_millis(250));
    }
}
