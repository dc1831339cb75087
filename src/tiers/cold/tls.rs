//! PostgreSQL TLS, as libpq defines `sslmode`: `disable`, `prefer` (the default: TLS when the
//! server offers it, else plain text), `require` (TLS or nothing, the certificate not checked
//! unless a root certificate is given, then as `verify-ca`), `verify-ca` (the chain must lead to
//! a trusted root) and `verify-full` (and the certificate must name the host). Roots come from
//! `sslrootcert` / `tiers.postgres.tls.caFile`, else the system's store. Nothing under `require`
//! or stronger ever falls back to plain text: tokio-postgres refuses a server that answers the
//! SSLRequest with `N` when the mode is `Require`.
//!
//! tokio-postgres knows only disable / prefer / require, so [`split_ssl`] takes `sslmode` and
//! `sslrootcert` out of the connection string and [`client_config`] builds the rustls side.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error as TlsError, RootCertStore, SignatureScheme,
};

/// libpq's `sslmode` values (`allow` is read as `prefer`: both may end in plain text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// What tokio-postgres is told: the verification is ours.
    pub fn wire(self) -> tokio_postgres::config::SslMode {
        match self {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        }
    }
}

/// The connection string without `sslmode` / `sslrootcert`, and their values (URL query or
/// key=value form). Errors name only the parameter, never the string (it may hold a password).
pub fn split_ssl(conn: &str) -> std::result::Result<(String, Option<SslMode>, Option<PathBuf>), String> {
    let mut mode = None;
    let mut root = None;
    let mut take = |k: &str, v: &str| -> std::result::Result<bool, String> {
        match k {
            "sslmode" => {
                // The value is not quoted back: a mangled string may have a password there.
                mode = Some(SslMode::parse(v).ok_or_else(|| {
                    "sslmode must be disable, allow, prefer, require, verify-ca or verify-full".to_string()
                })?);
                Ok(true)
            }
            "sslrootcert" => {
                root = Some(PathBuf::from(v));
                Ok(true)
            }
            _ => Ok(false),
        }
    };
    let rest = if conn.starts_with("postgres://") || conn.starts_with("postgresql://") {
        match conn.split_once('?') {
            None => conn.to_string(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if !take(&percent_decode(k), &percent_decode(v))? {
                        kept.push(pair);
                    }
                }
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        let mut kept = Vec::new();
        for tok in conn.split_whitespace() {
            let (k, v) = tok.split_once('=').unwrap_or((tok, ""));
            if !take(k, v.trim_matches('\''))? {
                kept.push(tok);
            }
        }
        kept.join(" ")
    };
    Ok((rest, mode, root))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The roots: the PEM file given, else the system's store.
fn roots(ca_file: Option<&Path>) -> std::result::Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match ca_file {
        Some(p) => {
            let certs = CertificateDer::pem_file_iter(p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| format!("{} is not a PEM certificate file: {e}", p.display()))?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!("{} holds no usable certificate", p.display()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
        }
    }
    Ok(store)
}

/// The rustls configuration for `mode` (unused by tokio-postgres under `disable`). `Err` is a
/// message about the CA file.
pub fn client_config(mode: SslMode, ca_file: Option<&Path>) -> std::result::Result<ClientConfig, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let chain = match mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => None,
        SslMode::VerifyCa | SslMode::VerifyFull => Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots(ca_file)?), provider.clone())
                .build()
                .map_err(|e| format!("TLS setup: {e}"))?,
        ),
    };
    let verifier = Arc::new(Verifier { provider, chain, hostname: mode == SslMode::VerifyFull });
    Ok(builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth())
}

/// One verifier for every mode. `prefer` / `require` (no `chain`): encrypted, the certificate
/// not checked (libpq's behaviour); `verify-ca`: the chain only; `verify-full`: chain and host
/// name. The handshake's signatures are checked in every mode.
#[derive(Debug)]
struct Verifier {
    provider: Arc<CryptoProvider>,
    chain: Option<Arc<WebPkiServerVerifier>>,
    hostname: bool,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, TlsError> {
        let Some(chain) = &self.chain else { return Ok(ServerCertVerified::assertion()) };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(TlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.hostname => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, TlsError> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, TlsError> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_ssl_parameters_out_of_both_forms() {
        let (rest, mode, root) =
            split_ssl("postgres://u:p@h:5432/db?sslmode=verify-full&application_name=x&sslrootcert=%2Ftmp%2Fca.pem")
                .unwrap();
        assert_eq!(rest, "postgres://u:p@h:5432/db?application_name=x");
        assert_eq!(mode, Some(SslMode::VerifyFull));
        assert_eq!(root, Some(PathBuf::from("/tmp/ca.pem")));
        let (rest, mode, _) = split_ssl("host=h user=u sslmode=require dbname=d").unwrap();
        assert_eq!(rest, "host=h user=u dbname=d");
        assert_eq!(mode, Some(SslMode::Require));
        let (rest, mode, root) = split_ssl("postgres://h/db?sslmode=disable").unwrap();
        assert_eq!((rest.as_str(), mode, root), ("postgres://h/db", Some(SslMode::Disable), None));
        let err = split_ssl("postgres://u:secret@h/db?sslmode=bogus").unwrap_err();
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn builds_every_mode() {
        for m in [SslMode::Disable, SslMode::Prefer, SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
            client_config(m, None).unwrap();
        }
        assert!(client_config(SslMode::VerifyFull, Some(Path::new("/nonexistent/ca.pem"))).is_err());
    }
}
