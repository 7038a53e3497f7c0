//! The audit sink's TLS: its serving certificate, and, when a client CA is given, client
//! certificates verified against it during the handshake (one that does not verify ends the
//! connection there; one not presented leaves the token as the only way in).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_cert::der::Decode as _;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

/// A TLS server configuration: `cert` and `key` (PEM files), and `client_ca` to verify client
/// certificates with.
pub fn server_config(cert: &Path, key: &Path, client_ca: Option<&Path>) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the certificates of {}", cert.display()))?;
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading the private key {}", key.display()))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match client_ca {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("reading the client CA {}", path.display()))?;
            for ca in certs {
                roots.add(ca).with_context(|| format!("a certificate of {} is not a CA", path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .context("the client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).context("the serving certificate and key do not match")?;
    // The sink speaks HTTP/1.1 only; a client offering h2 falls back to it.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The names a client certificate gives its holder: the subject's common name and every DNS
/// subject alternative name (nothing for one that does not parse).
pub fn names(certificate: &[u8]) -> Vec<String> {
    use x509_cert::der::oid::AssociatedOid as _;
    let Ok(parsed) = x509_cert::Certificate::from_der(certificate) else { return Vec::new() };
    let tbs = parsed.tbs_certificate();
    let mut names: Vec<String> = tbs.subject().common_name().ok().flatten().map(String::from).into_iter().collect();
    let alternatives = tbs.extensions().into_iter().flatten().filter(|e| e.extn_id == SubjectAltName::OID);
    for extension in alternatives {
        let Ok(SubjectAltName(general)) = SubjectAltName::from_der(extension.extn_value.as_bytes()) else { continue };
        names.extend(general.into_iter().filter_map(|name| match name {
            GeneralName::DnsName(dns) => Some(dns.to_string()),
            _ => None,
        }));
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_names_its_common_name_and_dns_names() {
        let mut params = rcgen::CertificateParams::new(vec!["audit.example".to_owned()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "kube-apiserver-audit");
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let certificate = params.self_signed(&key).unwrap();
        assert_eq!(names(certificate.der()), ["kube-apiserver-audit", "audit.example"]);
        assert!(names(b"not a certificate").is_empty());
    }
}
