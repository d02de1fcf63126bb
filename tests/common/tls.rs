//! TLS clients for the tests: rustls configured to trust the committed test CA
//! (`tests/certs/ca.pem`, made by `scripts/gen-test-certs.sh`), a tungstenite client over it,
//! and a raw TLS stream for scripted bytes.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use tungstenite::{Connector, WebSocket};

use super::WAIT;

/// A committed test certificate or key.
pub fn cert_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/certs")
        .join(name)
}

/// The server side: `name.pem` with `name.key` (`ecdsa`, `rsa`, `ecdsa-b`).
pub fn files(name: &str) -> wspush::TlsFiles {
    wspush::TlsFiles {
        cert: cert_path(&format!("{name}.pem")),
        key: cert_path(&format!("{name}.key")),
    }
}

/// A client configuration that trusts the test CA (and keeps sessions for resumption).
pub fn client_config() -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    let ca = CertificateDer::from_pem_file(cert_path("ca.pem")).expect("test CA");
    roots.add(ca).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A TCP connection to `addr` whose reads and writes are bounded.
pub fn tcp(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, WAIT).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

pub type TlsClient = WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>;

/// A tungstenite client over wss to `path` on `addr`, with `config`.
pub fn connect_with(addr: SocketAddr, path: &str, config: Arc<ClientConfig>) -> TlsClient {
    let url = format!("wss://localhost:{}{path}", addr.port());
    let (ws, response) =
        tungstenite::client_tls_with_config(url, tcp(addr), None, Some(Connector::Rustls(config)))
            .expect("wss handshake");
    assert_eq!(response.status(), 101);
    ws
}

/// A tungstenite client over wss to `path` on `addr`.
pub fn connect(addr: SocketAddr, path: &str) -> TlsClient {
    connect_with(addr, path, client_config())
}

/// A raw TLS stream to `addr` (no WebSocket yet), handshaken with `config`.
pub fn raw(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> StreamOwned<ClientConnection, TcpStream> {
    let name = ServerName::try_from("localhost").unwrap();
    let session = ClientConnection::new(config, name).unwrap();
    let mut stream = StreamOwned::new(session, tcp(addr));
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .expect("TLS handshake");
    }
    stream
}

/// Which test certificate the server presented on `session` ("wspush test A", "wspush test
/// B" or "wspush test RSA").
pub fn peer_subject(session: &ClientConnection) -> &'static str {
    let certs = session.peer_certificates().expect("a server certificate");
    let text = String::from_utf8_lossy(certs[0].as_ref()).into_owned();
    ["wspush test A", "wspush test B", "wspush test RSA"]
        .into_iter()
        .find(|subject| text.contains(subject))
        .expect("one of the test certificates")
}
