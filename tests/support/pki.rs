//! Certificates for the TLS tests, made afresh per test: a private CA, leaves it signs for
//! given names (valid, or expired), and self-signed leaves.

use super::receiver::Tls;
use rcgen::{
    date_time_ymd, BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A private certificate authority.
pub struct Ca {
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    /// A new root CA named `name`.
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// The CA's certificate, PEM.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// The CA's certificate, DER.
    pub fn der(&self) -> Vec<u8> {
        self.cert.der().to_vec()
    }

    /// A leaf for `names` (DNS names or IP addresses), valid from 1975 to 4096.
    pub fn leaf(&self, names: &[&str]) -> Tls {
        self.sign(leaf_params(names))
    }

    /// A leaf for `names` that expired on 2 January 2020.
    pub fn expired_leaf(&self, names: &[&str]) -> Tls {
        let mut params = leaf_params(names);
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2020, 1, 2);
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Tls {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Tls {
            chain: vec![cert.der().clone()],
            key: key.serialize_der(),
        }
    }
}

/// A self-signed leaf for `names`, valid from 1975 to 4096.
pub fn self_signed(names: &[&str]) -> Tls {
    let key = KeyPair::generate().unwrap();
    let cert = leaf_params(names).self_signed(&key).unwrap();
    Tls {
        chain: vec![cert.der().clone()],
        key: key.serialize_der(),
    }
}

fn leaf_params(names: &[&str]) -> CertificateParams {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names.clone()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, &names[0]);
    params
}
