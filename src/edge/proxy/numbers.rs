//! Decimal header values (`Content-Length`, `Retry-After`) without an allocation per answer.
//!
//! `HeaderValue::from(u64)` writes the digits into a new buffer every time; the gateway's
//! own answers are small, so their lengths and waits come from one table made once, whose
//! values share a static buffer (cloning one is a copy of a pointer and a length).

use bytes::Bytes;
use http::header::HeaderValue;
use std::sync::OnceLock;

/// Numbers below this come from the table.
const TABLE: usize = 4096;

/// `n` in decimal as a header value.
pub(super) fn decimal(n: u64) -> HeaderValue {
    let table = TABLE_VALUES.get_or_init(build);
    match usize::try_from(n).ok().and_then(|i| table.get(i)) {
        Some(v) => v.clone(),
        None => HeaderValue::from(n),
    }
}

static TABLE_VALUES: OnceLock<Vec<HeaderValue>> = OnceLock::new();

fn build() -> Vec<HeaderValue> {
    let mut text = String::new();
    let mut ends = Vec::with_capacity(TABLE);
    for n in 0..TABLE {
        text.push_str(&n.to_string());
        ends.push(text.len());
    }
    // Made once per process and kept for its life: the values borrow it.
    let text: &'static [u8] = Box::leak(text.into_bytes().into_boxed_slice());
    let mut start = 0;
    ends.into_iter()
        .map(|end| {
            let digits = Bytes::from_static(&text[start..end]);
            start = end;
            HeaderValue::from_maybe_shared(digits).expect("digits are a valid header value")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_number_reads_as_itself() {
        for n in (0..5000).chain([u64::from(u32::MAX), u64::MAX]) {
            assert_eq!(decimal(n), HeaderValue::from(n), "{n}");
            assert_eq!(decimal(n).to_str().unwrap(), n.to_string());
        }
    }
}
