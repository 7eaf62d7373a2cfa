//! Distinguished names for `tls_client_auth_subject_dn` (RFC 8705 2.1.2): the configured
//! string read as RFC 4514 writes a DN, compared with a certificate's subject by meaning,
//! not by spelling.
//!
//! - The string lists RDNs from the most specific (`CN=...,O=...,C=...`), the reverse of
//!   the certificate's order (RFC 4514 2.1). An OpenSSL-style string in certificate order
//!   (`C=..., O=..., CN=...`) names another DN and does not match: it fails closed.
//! - Attribute types by their RFC 4514 / X.520 short names (any letter case) or dotted OID.
//! - Values: RFC 4514 escapes (`\,`, `\2C`, UTF-8 bytes as `\C3\A9`) decoded; spaces
//!   around `,`, `+` and `=` ignored; compared after RFC 4518-style preparation (ends
//!   trimmed, inner runs of white space one space, case folded), as `caseIgnoreMatch`.
//! - A multi-valued RDN (`+`) matches whatever order its values are written in.
//! - `#hex` (BER) values, unescaped `"`, `;`, `<`, `>` and RFC 1779 `;` separators are
//!   refused at start-up rather than guessed at.

/// A parsed distinguished name: RDNs in RFC 4514 order, each a sorted set of
/// (attribute type OID, prepared value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dn(Vec<Vec<(String, String)>>);

/// Short names (RFC 4514 3 and common X.520 ones) and their OIDs.
const NAMES: &[(&str, &str)] = &[
    ("CN", "2.5.4.3"),
    ("L", "2.5.4.7"),
    ("ST", "2.5.4.8"),
    ("O", "2.5.4.10"),
    ("OU", "2.5.4.11"),
    ("C", "2.5.4.6"),
    ("STREET", "2.5.4.9"),
    ("DC", "0.9.2342.19200300.100.1.25"),
    ("UID", "0.9.2342.19200300.100.1.1"),
    ("SN", "2.5.4.4"),
    ("SURNAME", "2.5.4.4"),
    ("SERIALNUMBER", "2.5.4.5"),
    ("TITLE", "2.5.4.12"),
    ("POSTALCODE", "2.5.4.17"),
    ("GIVENNAME", "2.5.4.42"),
    ("GN", "2.5.4.42"),
    ("INITIALS", "2.5.4.43"),
    ("ORGANIZATIONIDENTIFIER", "2.5.4.97"),
    ("EMAILADDRESS", "1.2.840.113549.1.9.1"),
    ("E", "1.2.840.113549.1.9.1"),
];

impl Dn {
    /// Reads an RFC 4514 string; the error says what is wrong, never repeating the value.
    pub fn parse(s: &str) -> Result<Dn, String> {
        let mut rdns = Vec::new();
        let mut rdn = Vec::new();
        let mut chars = s.chars().peekable();
        loop {
            let mut kind = String::new();
            for c in chars.by_ref() {
                if c == '=' {
                    break;
                }
                kind.push(c);
            }
            let oid = oid_of(kind.trim())?;
            let mut value = Vec::<u8>::new();
            let mut end = None;
            while let Some(c) = chars.next() {
                match c {
                    ',' | '+' => {
                        end = Some(c);
                        break;
                    }
                    '\\' => match chars.next() {
                        Some(e) if ",+\"\\<>;= #".contains(e) => {
                            value.extend_from_slice(e.to_string().as_bytes())
                        }
                        Some(h) if h.is_ascii_hexdigit() => {
                            let l = chars
                                .next()
                                .filter(char::is_ascii_hexdigit)
                                .ok_or("has an escape that is not two hexadecimal digits")?;
                            let byte = u8::from_str_radix(&format!("{h}{l}"), 16)
                                .map_err(|_| "has an invalid escape")?;
                            value.push(byte);
                        }
                        _ => return Err("has an invalid escape".into()),
                    },
                    '"' | ';' | '<' | '>' => {
                        return Err(format!(
                            "has an unescaped `{c}`; escape it with a backslash (RFC 4514 2.4)"
                        ))
                    }
                    '#' if value.iter().all(|b| *b == b' ') => {
                        return Err("has a #hex (BER) value, which is not supported".into())
                    }
                    c => value.extend_from_slice(c.to_string().as_bytes()),
                }
            }
            let value = String::from_utf8(value).map_err(|_| "has escapes that are not UTF-8")?;
            let value = prepare(&value);
            if value.is_empty() {
                return Err("has an attribute with an empty value".into());
            }
            rdn.push((oid, value));
            if end != Some('+') {
                rdn.sort();
                rdns.push(std::mem::take(&mut rdn));
            }
            if end.is_none() {
                break;
            }
        }
        Ok(Dn(rdns))
    }

    /// Whether a certificate's subject (DER of the whole certificate) is this DN.
    pub fn matches_certificate(&self, der: &[u8]) -> bool {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
            return false;
        };
        let mut subject = Vec::new();
        for rdn in cert.subject().iter() {
            let mut set = Vec::new();
            for atv in rdn.iter() {
                // A value that is not a string type cannot equal a configured string.
                let Ok(v) = atv.as_str() else { return false };
                set.push((atv.attr_type().to_id_string(), prepare(v)));
            }
            set.sort();
            subject.push(set);
        }
        subject.reverse();
        subject == self.0
    }
}

fn oid_of(kind: &str) -> Result<String, String> {
    if !kind.is_empty()
        && kind
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && kind.contains('.')
    {
        return Ok(kind.to_string());
    }
    NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(kind))
        .map(|(_, oid)| oid.to_string())
        .ok_or_else(|| {
            if kind.is_empty() {
                "has an attribute without a type (`TYPE=value`)".to_string()
            } else {
                format!("has an unknown attribute type `{kind}`; use a dotted OID for it")
            }
        })
}

/// RFC 4518-style preparation for `caseIgnoreMatch`: white space trimmed and folded to
/// one space, letters in lower case.
fn prepare(v: &str) -> String {
    v.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair};

    fn cert(attrs: &[(DnType, &str)]) -> Vec<u8> {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        for (t, v) in attrs {
            p.distinguished_name.push(t.clone(), *v);
        }
        p.self_signed(&KeyPair::generate().unwrap())
            .unwrap()
            .der()
            .to_vec()
    }

    #[test]
    fn rfc_4514_order_spelling_and_case_are_meaning_not_bytes() {
        // Certificate order: C, O, CN.
        let der = cert(&[
            (DnType::CountryName, "DK"),
            (DnType::OrganizationName, "Bank, A/S"),
            (DnType::CommonName, "client  one"),
        ]);
        for ok in [
            r"CN=client one,O=Bank\, A/S,C=DK",
            r"cn=Client One, o=BANK\2C A/S , c=dk",
            r"2.5.4.3=client one,O=Bank\2c A/S,C=DK",
            r"CN=  client   one ,O=Bank\, A/S,C=DK",
        ] {
            assert!(Dn::parse(ok).unwrap().matches_certificate(&der), "{ok}");
        }
        for no in [
            r"C=DK,O=Bank\, A/S,CN=client one", // certificate order
            r"CN=client one,O=Bank,C=DK",
            r"CN=client one,O=Bank\, A/S",
            r"CN=client one,O=Bank\, A/S,C=DK,DC=x",
            r"CN=client one+C=DK,O=Bank\, A/S",
            r"CN=client on,O=Bank\, A/S,C=DK",
            r"L=client one,O=Bank\, A/S,C=DK",
        ] {
            assert!(!Dn::parse(no).unwrap().matches_certificate(&der), "{no}");
        }
        assert!(!Dn::parse("CN=x").unwrap().matches_certificate(b"junk"));
    }

    #[test]
    fn utf8_escapes_and_multi_valued_rdns() {
        let der = cert(&[(DnType::CommonName, "Jörg")]);
        assert!(Dn::parse(r"CN=J\C3\B6rg")
            .unwrap()
            .matches_certificate(&der));
        assert!(Dn::parse("CN=JÖRG").unwrap().matches_certificate(&der));
        let a = Dn::parse("CN=a+O=b,C=DK").unwrap();
        let b = Dn::parse("O=b + CN=a , C=DK").unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn what_cannot_be_read_one_way_is_refused() {
        for bad in [
            "",
            "CN",
            "=x",
            "CN=",
            "CN=a;O=b",
            "CN=\"quoted\"",
            "CN=#04024869",
            r"CN=a\",
            r"CN=a\zz",
            r"CN=a\4",
            r"CN=\FF",
            "FOO=bar",
            "CN=a,",
            "1.2..3=x",
        ] {
            assert!(Dn::parse(bad).is_err(), "{bad:?}");
        }
    }
}
