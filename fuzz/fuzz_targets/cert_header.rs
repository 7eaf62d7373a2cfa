//! The certificate header a TLS terminator writes (`cert_header::parse`), in both formats.
//! It must never panic; what it accepts is exactly one X.509 certificate that the other
//! format's writer and reader carry unchanged; an input it accepts in one format is read
//! the same whatever white space surrounds it.
#![no_main]

use ciba_gateway::ciba::cert_header::{encode, parse, CertFormat};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for format in [CertFormat::Pem, CertFormat::Rfc9440] {
        let Ok(Some(der)) = parse(data, format) else {
            continue;
        };
        let (rest, _) = x509_parser::parse_x509_certificate(&der).expect("a certificate");
        assert!(rest.is_empty(), "bytes after the certificate");
        for other in [CertFormat::Pem, CertFormat::Rfc9440] {
            let written = encode(&der, other);
            assert!(written.bytes().all(|b| b.is_ascii_graphic()));
            assert_eq!(parse(written.as_bytes(), other), Ok(Some(der.clone())));
        }
        let mut padded = b" \t".to_vec();
        padded.extend_from_slice(data);
        padded.push(b' ');
        assert_eq!(parse(&padded, format), Ok(Some(der.clone())));
    }
});
