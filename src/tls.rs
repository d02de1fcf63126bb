//! The server's TLS identity: the certificate chain and key read from the configured PEM files,
//! the rustls configuration built from them, and its reload.
//!
//! Owns the paths, the current `rustls::ServerConfig` and what must survive a reload (the
//! session-ticket keys and the session cache, so that tickets issued before a renewal still
//! resume). A reload builds a whole new configuration first and swaps it in only when every
//! step succeeded: a bad file leaves the old one serving. It never touches a connection: new
//! handshakes take the configuration current when they are accepted, established sessions keep
//! the one they started with.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::ring::{default_provider, Ticketer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

/// Sessions remembered for resumption by session id (TLS 1.2 clients without tickets); tickets
/// need no server memory.
const SESSION_CACHE: usize = 1024;

/// Where the certificate chain and its private key are read from (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain: the server's certificate first, then its intermediates.
    pub cert: PathBuf,
    /// The private key: PKCS#8, SEC1 (EC) or PKCS#1 (RSA).
    pub key: PathBuf,
}

/// Why the TLS configuration could not be built; names the file at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError(String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// The TLS configuration in force, and how to rebuild it from the same files.
pub(crate) struct Identity {
    files: TlsFiles,
    config: Arc<ServerConfig>,
    /// Shared by every configuration this identity builds.
    ticketer: Arc<dyn ProducesTickets>,
    sessions: Arc<dyn StoresServerSessions>,
    /// What the current certificate says of itself, for the logs.
    summary: String,
}

impl Identity {
    /// Reads the files and builds the first configuration.
    pub(crate) fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let ticketer = Ticketer::new()
            .map_err(|error| TlsError(format!("cannot create session-ticket keys: {error}")))?;
        let sessions: Arc<dyn StoresServerSessions> = ServerSessionMemoryCache::new(SESSION_CACHE);
        let (config, summary) = build(files, &ticketer, &sessions)?;
        Ok(Self {
            files: files.clone(),
            config,
            ticketer,
            sessions,
            summary,
        })
    }

    /// The configuration new handshakes use.
    pub(crate) fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    /// What the certificate in force is (its chain length and key type), for the logs.
    pub(crate) fn summary(&self) -> &str {
        &self.summary
    }

    /// Reads the same files again; on success new handshakes get the new certificate, on
    /// failure the current one stays and the error says why.
    pub(crate) fn reload(&mut self) -> Result<&str, TlsError> {
        let (config, summary) = build(&self.files, &self.ticketer, &self.sessions)?;
        self.config = config;
        self.summary = summary;
        Ok(&self.summary)
    }
}

/// Builds a configuration from `files`, with the given ticket keys and session cache.
fn build(
    files: &TlsFiles,
    ticketer: &Arc<dyn ProducesTickets>,
    sessions: &Arc<dyn StoresServerSessions>,
) -> Result<(Arc<ServerConfig>, String), TlsError> {
    let chain = read_chain(&files.cert)?;
    let key = read_key(&files.key)?;
    let provider = Arc::new(default_provider());
    let signer = provider
        .key_provider
        .load_private_key(key)
        .map_err(|error| {
            TlsError(format!(
                "{}: unusable private key: {error}",
                files.key.display()
            ))
        })?;
    let algorithm = format!("{:?}", signer.algorithm());
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(|error| {
        TlsError(format!(
            "{} and {}: the key does not belong to the first certificate ({error})",
            files.key.display(),
            files.cert.display()
        ))
    })?;
    let summary = format!(
        "{} certificate(s), {algorithm} key, from {}",
        certified.cert.len(),
        files.cert.display()
    );
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError(format!("TLS configuration refused: {error}")))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
    config.ticketer = Arc::clone(ticketer);
    config.session_storage = Arc::clone(sessions);
    // WebSocket upgrades are HTTP/1.1; advertising nothing keeps every client's ALPN offer
    // acceptable (an offer without a match would be a fatal alert).
    config.alpn_protocols = Vec::new();
    Ok((Arc::new(config), summary))
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|error| TlsError(format!("{}: {}", path.display(), pem_error(&error))))?;
    if chain.is_empty() {
        return Err(TlsError(format!(
            "{}: no certificate found (expected PEM blocks \"-----BEGIN CERTIFICATE-----\")",
            path.display()
        )));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|error| {
        let why = match error {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no private key found (expected a PKCS#8, SEC1 or PKCS#1 PEM block)".to_owned()
            }
            other => pem_error(&other),
        };
        TlsError(format!("{}: {why}", path.display()))
    })
}

fn pem_error(error: &rustls::pki_types::pem::Error) -> String {
    match error {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        other => format!("not valid PEM: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certs(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/certs")
            .join(name)
    }

    fn files(cert: &str, key: &str) -> TlsFiles {
        TlsFiles {
            cert: certs(cert),
            key: certs(key),
        }
    }

    #[test]
    fn every_committed_pair_loads_in_each_key_format() {
        for (cert, key) in [
            ("ecdsa.pem", "ecdsa.key"),
            ("rsa.pem", "rsa.key"),
            ("ecdsa-b.pem", "ecdsa-b.key"),
        ] {
            let identity = Identity::load(&files(cert, key)).unwrap();
            assert!(identity.summary().contains(cert), "{}", identity.summary());
        }
    }

    #[test]
    fn mismatched_or_missing_files_are_refused_naming_the_file() {
        let error = Identity::load(&files("ecdsa.pem", "ecdsa-b.key"))
            .err()
            .unwrap();
        assert!(error.0.contains("does not belong"), "{error}");
        assert!(error.0.contains("ecdsa-b.key"), "{error}");
        let error = Identity::load(&files("ecdsa.pem", "nope.key"))
            .err()
            .unwrap();
        assert!(error.0.contains("nope.key"), "{error}");
        // A key file given as the certificate: no certificate in it.
        let error = Identity::load(&files("ecdsa.key", "ecdsa.key"))
            .err()
            .unwrap();
        assert!(error.0.contains("no certificate"), "{error}");
        let error = Identity::load(&files("ecdsa.pem", "ecdsa.pem"))
            .err()
            .unwrap();
        assert!(error.0.contains("no private key"), "{error}");
    }

    #[test]
    fn a_failed_reload_keeps_the_configuration_in_force() {
        let dir = std::env::temp_dir().join(format!("wspush-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::copy(certs("ecdsa.pem"), &cert).unwrap();
        std::fs::copy(certs("ecdsa.key"), &key).unwrap();
        let mut identity = Identity::load(&TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        })
        .unwrap();
        let before = Arc::clone(identity.config());
        std::fs::write(&cert, "garbage").unwrap();
        assert!(identity.reload().is_err());
        assert!(Arc::ptr_eq(&before, identity.config()));
        std::fs::copy(certs("rsa.pem"), &cert).unwrap();
        std::fs::copy(certs("rsa.key"), &key).unwrap();
        assert!(identity.reload().is_ok());
        assert!(!Arc::ptr_eq(&before, identity.config()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
