//! A client certificate carried in an HTTP header by a TLS terminator in front of the
//! gateway, and the header the gateway writes for the OP.
//!
//! Two formats, both of one leaf certificate:
//! - [`CertFormat::Pem`]: a URL-encoded PEM block, as nginx's `$ssl_client_escaped_cert`
//!   writes it (percent-encoding of every byte outside the unreserved set);
//! - [`CertFormat::Rfc9440`]: RFC 9440's `Client-Cert`, a Structured Field Byte Sequence
//!   (`:` base64 of the DER `:`).
//!
//! Parsing is strict: one certificate, nothing around it but white space, base64 without
//! gaps or stray characters, DER that parses as one X.509 certificate with nothing after
//! it. A header that is not exactly that is refused, never read loosely: two readers that
//! disagree on which certificate a header holds are a way to present one and be bound to
//! another.

use base64::Engine;
use serde::Deserialize;

/// Longest header value read: a leaf certificate is a few KiB; PEM and percent-encoding
/// at most triple it.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// How a certificate is written in a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertFormat {
    /// URL-encoded PEM (nginx `$ssl_client_escaped_cert`).
    #[default]
    Pem,
    /// RFC 9440 `Client-Cert`: `:base64(DER):`.
    Rfc9440,
}

impl CertFormat {
    /// The format's name in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            CertFormat::Pem => "pem",
            CertFormat::Rfc9440 => "rfc9440",
        }
    }
}

/// Why a header's certificate was refused; the description never repeats the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadHeader {
    /// Longer than [`MAX_HEADER_BYTES`].
    TooLong,
    /// Not the format's framing (PEM armour, `:...:`).
    Framing,
    /// A percent-escape that is not two hexadecimal digits.
    Escape,
    /// The base64 inside is not canonical standard base64.
    Base64,
    /// The bytes are not exactly one X.509 certificate.
    NotACertificate,
}

impl BadHeader {
    /// What is wrong, for the error description.
    pub fn describe(self) -> &'static str {
        match self {
            BadHeader::TooLong => "is too long",
            BadHeader::Framing => "is not one certificate in the configured format",
            BadHeader::Escape => "has an invalid percent-escape",
            BadHeader::Base64 => "has invalid base64",
            BadHeader::NotACertificate => "does not hold one X.509 certificate",
        }
    }
}

/// The DER of the one certificate a header value holds, in `format`.
///
/// `Ok(None)` for an empty value (a terminator that saw no certificate, as nginx writes
/// an empty `$ssl_client_escaped_cert`).
pub fn parse(value: &[u8], format: CertFormat) -> Result<Option<Vec<u8>>, BadHeader> {
    if value.len() > MAX_HEADER_BYTES {
        return Err(BadHeader::TooLong);
    }
    let value = trim_ows(value);
    if value.is_empty() {
        return Ok(None);
    }
    let der = match format {
        CertFormat::Pem => pem_der(&percent_decode(value)?)?,
        CertFormat::Rfc9440 => {
            let inner = value
                .strip_prefix(b":")
                .and_then(|v| v.strip_suffix(b":"))
                .ok_or(BadHeader::Framing)?;
            decode_b64(inner)?
        }
    };
    check_der(&der)?;
    Ok(Some(der))
}

/// Writes `der` as a header value in `format` (visible ASCII only).
pub fn encode(der: &[u8], format: CertFormat) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    match format {
        CertFormat::Rfc9440 => format!(":{b64}:"),
        CertFormat::Pem => {
            let mut pem = String::with_capacity(b64.len() + b64.len() / 64 + 64);
            pem.push_str("-----BEGIN CERTIFICATE-----\n");
            for line in b64.as_bytes().chunks(64) {
                pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
                pem.push('\n');
            }
            pem.push_str("-----END CERTIFICATE-----\n");
            percent_encode(&pem)
        }
    }
}

/// Percent-encodes every byte outside RFC 3986's unreserved set.
fn percent_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
    out
}

/// Leading and trailing spaces and tabs (RFC 9110 OWS).
fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !matches!(b, b' ' | b'\t'));
    let Some(start) = start else { return &[] };
    let end = v
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(start);
    &v[start..=end]
}

/// Decodes `%XX` once; a `%` not followed by two hex digits is refused. `+` stays a `+`
/// (base64 uses it; nginx escapes it as `%2B` but leaves it valid either way).
fn percent_decode(v: &[u8]) -> Result<Vec<u8>, BadHeader> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%' {
            let (Some(h), Some(l)) = (
                v.get(i + 1).copied().and_then(hex),
                v.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(BadHeader::Escape);
            };
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(v[i]);
            i += 1;
        }
    }
    Ok(out)
}

const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
const END: &[u8] = b"-----END CERTIFICATE-----";

/// The DER of the one `CERTIFICATE` block `pem` is, white space around it allowed.
fn pem_der(pem: &[u8]) -> Result<Vec<u8>, BadHeader> {
    let pem = trim_ws(pem);
    let body = pem
        .strip_prefix(BEGIN)
        .and_then(|p| p.strip_suffix(END))
        .ok_or(BadHeader::Framing)?;
    // A second block (a chain, or another certificate) would leave armour inside.
    if body.windows(5).any(|w| w == b"-----") {
        return Err(BadHeader::Framing);
    }
    let b64: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .collect();
    decode_b64(&b64)
}

fn trim_ws(v: &[u8]) -> &[u8] {
    let ws = |b: &u8| b.is_ascii_whitespace();
    let start = v.iter().position(|b| !ws(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !ws(b)).map_or(start, |i| i + 1);
    &v[start..end.max(start)]
}

/// Standard base64 with canonical padding; anything else is refused.
fn decode_b64(v: &[u8]) -> Result<Vec<u8>, BadHeader> {
    if v.is_empty() {
        return Err(BadHeader::Base64);
    }
    base64::engine::general_purpose::STANDARD
        .decode(v)
        .map_err(|_| BadHeader::Base64)
}

/// One X.509 certificate, nothing after it.
fn check_der(der: &[u8]) -> Result<(), BadHeader> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], _)) => Ok(()),
        _ => Err(BadHeader::NotACertificate),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert() -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["client.example".to_string()]).unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn both_formats_round_trip() {
        let der = cert();
        for f in [CertFormat::Pem, CertFormat::Rfc9440] {
            let v = encode(&der, f);
            assert!(v.bytes().all(|b| b.is_ascii_graphic()), "{v}");
            assert_eq!(parse(v.as_bytes(), f).unwrap(), Some(der.clone()));
            assert_eq!(
                parse(format!(" \t{v} ").as_bytes(), f).unwrap(),
                Some(der.clone())
            );
        }
    }

    #[test]
    fn nginx_escaping_and_plain_pem_lines_are_read() {
        let der = cert();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        // nginx escapes `/`, `+`, `=` and new lines, but neither `-` nor letters.
        let nginx = format!(
            "-----BEGIN%20CERTIFICATE-----%0A{}%0A-----END%20CERTIFICATE-----%0A",
            b64.replace('/', "%2F")
                .replace('+', "%2B")
                .replace('=', "%3D")
        );
        assert_eq!(parse(nginx.as_bytes(), CertFormat::Pem).unwrap(), Some(der));
    }

    #[test]
    fn empty_is_no_certificate() {
        assert_eq!(parse(b"", CertFormat::Pem).unwrap(), None);
        assert_eq!(parse(b"  ", CertFormat::Rfc9440).unwrap(), None);
    }

    #[test]
    fn hostile_values_are_refused() {
        let der = cert();
        let pem = encode(&der, CertFormat::Pem);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        let two = format!("{pem}{pem}");
        let mut trailing = der.clone();
        trailing.push(0);
        let trailing = format!(
            ":{}:",
            base64::engine::general_purpose::STANDARD.encode(&trailing)
        );
        let cases: Vec<(String, CertFormat, BadHeader)> = vec![
            (two, CertFormat::Pem, BadHeader::Framing),
            (format!("x{pem}"), CertFormat::Pem, BadHeader::Framing),
            (
                pem.replace("CERTIFICATE", "PRIVATE%20KEY"),
                CertFormat::Pem,
                BadHeader::Framing,
            ),
            (format!("{pem}%"), CertFormat::Pem, BadHeader::Escape),
            (format!("{pem}%4"), CertFormat::Pem, BadHeader::Escape),
            (
                pem.replacen("%0A", "%0G", 1),
                CertFormat::Pem,
                BadHeader::Escape,
            ),
            (
                format!(
                    "-----BEGIN CERTIFICATE-----\n{}*\n-----END CERTIFICATE-----",
                    b64
                ),
                CertFormat::Pem,
                BadHeader::Base64,
            ),
            (
                "-----BEGIN CERTIFICATE----------END CERTIFICATE-----".into(),
                CertFormat::Pem,
                BadHeader::Base64,
            ),
            (
                "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----".into(),
                CertFormat::Pem,
                BadHeader::NotACertificate,
            ),
            (b64.clone(), CertFormat::Rfc9440, BadHeader::Framing),
            (format!(":{b64}"), CertFormat::Rfc9440, BadHeader::Framing),
            (":".into(), CertFormat::Rfc9440, BadHeader::Framing),
            ("::".into(), CertFormat::Rfc9440, BadHeader::Base64),
            // The base64url alphabet: a `-` where standard Base64 has none (replacing `+`
            // alone would leave a certificate whose encoding has no `+` unchanged).
            (
                format!(":-{}:", &b64[1..]),
                CertFormat::Rfc9440,
                BadHeader::Base64,
            ),
            (format!(": {b64}:"), CertFormat::Rfc9440, BadHeader::Base64),
            (
                format!(":{b64}:, :{b64}:"),
                CertFormat::Rfc9440,
                BadHeader::Base64,
            ),
            (trailing, CertFormat::Rfc9440, BadHeader::NotACertificate),
            (
                format!(":{}:", "A".repeat(MAX_HEADER_BYTES)),
                CertFormat::Rfc9440,
                BadHeader::TooLong,
            ),
            // The PEM format does not accept the other format, nor the reverse.
            (format!(":{b64}:"), CertFormat::Pem, BadHeader::Framing),
            (pem.clone(), CertFormat::Rfc9440, BadHeader::Framing),
        ];
        for (value, format, want) in cases {
            assert_eq!(
                parse(value.as_bytes(), format),
                Err(want),
                "{format:?} {:.80}",
                value
            );
        }
    }
}
