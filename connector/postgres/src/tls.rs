//! TLS for the SQL connection, with libpq's `sslmode` meanings: `prefer` and
//! `require` encrypt without verifying, `verify-ca` checks the chain only,
//! `verify-full` checks the chain and the host name.

use std::sync::{Arc, Mutex};

use pgkafka_crds::SslMode;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::PgError;

/// The crypto provider used everywhere (ring; rustls refuses to pick one when
/// two are compiled in).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs the process-wide default provider, for libraries that build their
/// own rustls configuration. Safe to call more than once.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The DNS name of the last certificate whose chain `verify-ca` accepted.
///
/// The replication client's own `verify-ca` still checks the host name with
/// current rustls (it misses `NotValidForNameContext`), so the engine gives it
/// the name the certificate carries, learnt here on the SQL connection; its
/// chain is still verified against the CA on every connection.
#[derive(Debug, Clone, Default)]
pub struct VerifiedName(Arc<Mutex<Option<String>>>);

impl VerifiedName {
    /// The name, once a certificate was verified.
    pub fn get(&self) -> Option<String> {
        self.0.lock().ok().and_then(|n| n.clone())
    }

    fn set(&self, cert: &CertificateDer<'_>) {
        let name = webpki::EndEntityCert::try_from(cert)
            .ok()
            .and_then(|c| c.valid_dns_names().next().map(str::to_owned));
        if let (Some(name), Ok(mut slot)) = (name, self.0.lock()) {
            *slot = Some(name);
        }
    }
}

/// The rustls client configuration for `mode`; `None` for `disable`.
/// `verified` learns the certificate's name under `verify-ca`.
pub(crate) fn client_config(
    mode: SslMode,
    ca_pem: Option<&str>,
    verified: &VerifiedName,
) -> Result<Option<rustls::ClientConfig>, PgError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("TLS setup", e))?;
    let config = match mode {
        SslMode::Disable => return Ok(None),
        SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
            .with_no_client_auth(),
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = Arc::new(root_store(ca_pem)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| tls_error("CA bundle", e))?;
            let verifier: Arc<dyn ServerCertVerifier> = if mode == SslMode::VerifyCa {
                Arc::new(ChainOnly(webpki, verified.clone()))
            } else {
                webpki
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        }
    };
    Ok(Some(config))
}

fn tls_error(context: &str, source: impl std::error::Error + Send + Sync + 'static) -> PgError {
    PgError::Tls {
        context: context.to_owned(),
        source: Box::new(source),
    }
}

/// The CA bundle's certificates, or the web PKI's roots without one.
fn root_store(ca_pem: Option<&str>) -> Result<RootCertStore, PgError> {
    let mut roots = RootCertStore::empty();
    let Some(pem) = ca_pem else {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        return Ok(roots);
    };
    for cert in rustls_pemfile::certs(&mut pem.as_bytes()) {
        let cert = cert.map_err(|e| tls_error("CA bundle", e))?;
        roots.add(cert).map_err(|e| tls_error("CA bundle", e))?;
    }
    if roots.is_empty() {
        return Err(tls_error(
            "CA bundle",
            std::io::Error::other("it holds no PEM certificate"),
        ));
    }
    Ok(roots)
}

/// `prefer` / `require`: encryption without authentication, as libpq does.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to the CA; the host name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>, VerifiedName);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict =
            match self
                .0
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            {
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                )) => Ok(ServerCertVerified::assertion()),
                other => other,
            };
        if verdict.is_ok() {
            self.1.set(end_entity);
        }
        verdict
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
