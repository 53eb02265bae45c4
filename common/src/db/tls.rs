//! TLS to PostgreSQL: rustls with its ring provider, linked into the fully
//! static binaries (see docs/DECISIONS.md), with libpq's meanings of
//! the modes: `verify-full` checks the server's certificate against the
//! `db-ca-certificate` CA and its name against the host; `require` and
//! `prefer` accept any certificate but still check the handshake's
//! signatures, so the session is encrypted with the key of whoever holds it.

use crate::config::{Tls, DB_CA_SECRET};
use crate::error::Error;
use std::sync::Arc;

/// The rustls configuration for `prefer`, `require` or `verify-full`.
pub(super) fn config(tls: &Tls) -> Result<rustls::ClientConfig, Error> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("TLS configuration: {e}")))?;
    let config = match tls {
        Tls::VerifyFull { ca_pem } => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
                let certificate = certificate.map_err(|e| {
                    Error::Config(format!(
                        "secret {} is not a PEM certificate ({e})",
                        DB_CA_SECRET
                    ))
                })?;
                roots.add(certificate).map_err(|e| {
                    Error::Config(format!(
                        "secret {} holds an unusable certificate ({e})",
                        DB_CA_SECRET
                    ))
                })?;
            }
            if roots.is_empty() {
                return Err(Error::Config(format!(
                    "secret {} holds no PEM certificate",
                    DB_CA_SECRET
                )));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Tls::Require | Tls::Prefer | Tls::Disable => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
    };
    Ok(config)
}

/// `require`: any certificate is accepted (libpq's meaning of the mode), but
/// the handshake's signatures are still checked, so the session is
/// encrypted with the key of whoever holds that certificate.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
