//! The opening handshake (RFC 6455 §4.2): parse the client's upgrade request, check it, and
//! build the answer.
//!
//! Pure functions over bytes. A request is either incomplete, acceptable (with the parsed view
//! the handler sees and the `Sec-WebSocket-Accept` value), or refused with the HTTP status and a
//! one-line reason the client gets back. Nothing here reads a socket or allocates per header.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sha1::{Digest, Sha1};

use super::http::{
    first_header, header_values, is_field_value, is_token, lists_token, status_text,
};

/// The GUID every accept key is derived with (§1.3).
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// How many headers a request may carry before it is refused with 431.
pub const MAX_HEADERS: usize = 64;

/// A handshake refused with an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeError {
    /// The HTTP status code of the answer.
    pub status: u16,
    /// A short explanation, sent as the body.
    pub reason: &'static str,
}

impl HandshakeError {
    const fn new(status: u16, reason: &'static str) -> Self {
        Self { status, reason }
    }
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

impl std::error::Error for HandshakeError {}

/// A parsed, valid upgrade request.
#[derive(Debug)]
pub struct UpgradeRequest<'h, 'b> {
    /// The request target, path and query together.
    pub target: &'b str,
    /// Every header, in the order received.
    pub headers: &'h [httparse::Header<'b>],
    /// The value for the `Sec-WebSocket-Accept` response header.
    pub accept: String,
    /// How many bytes of the input the request used; what follows is already frame data.
    pub len: usize,
}

/// Parses an upgrade request from `buf`.
///
/// Returns `Ok(None)` while the request is incomplete and shorter than `max_len`. `headers` is
/// the storage the parsed headers borrow.
pub fn parse_request<'h, 'b>(
    buf: &'b [u8],
    max_len: usize,
    headers: &'h mut [httparse::Header<'b>; MAX_HEADERS],
) -> Result<Option<UpgradeRequest<'h, 'b>>, HandshakeError> {
    let mut request = httparse::Request::new(headers);
    // Only the bytes the request may span are parsed, so the answer to one over the limit is
    // 431 however its bytes arrived.
    let window = &buf[..buf.len().min(max_len)];
    let len = match request.parse(window) {
        Ok(httparse::Status::Complete(len)) if len <= max_len => len,
        Ok(httparse::Status::Complete(_)) => return Err(TOO_LARGE),
        Ok(httparse::Status::Partial) if buf.len() >= max_len => return Err(TOO_LARGE),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(TOO_LARGE),
        Err(_) => return Err(HandshakeError::new(400, "malformed HTTP request")),
    };
    // §4.2.1: "An HTTP/1.1 or higher GET request".
    if request.method != Some("GET") {
        return Err(HandshakeError::new(405, "only GET can open a WebSocket"));
    }
    if request.version != Some(1) {
        return Err(HandshakeError::new(400, "HTTP/1.1 is required"));
    }
    let target = request.path.unwrap_or("/");
    let headers: &'h [httparse::Header<'b>] = request.headers;
    let find = |name: &str| first_header(headers, name);
    if find("host").is_none() {
        return Err(HandshakeError::new(400, "missing Host header"));
    }
    if !lists_token(header_values(headers, "upgrade"), "websocket") {
        return Err(HandshakeError::new(
            400,
            "missing Upgrade: websocket header",
        ));
    }
    if !lists_token(header_values(headers, "connection"), "upgrade") {
        return Err(HandshakeError::new(
            400,
            "missing Connection: Upgrade header",
        ));
    }
    match find("sec-websocket-version") {
        Some(b"13") => {}
        Some(_) => return Err(VERSION_UNSUPPORTED),
        None => {
            return Err(HandshakeError::new(
                400,
                "missing Sec-WebSocket-Version header",
            ))
        }
    }
    let key = find("sec-websocket-key")
        .map(<[u8]>::trim_ascii)
        .ok_or(HandshakeError::new(400, "missing Sec-WebSocket-Key header"))?;
    // §4.1: "a randomly selected 16-byte value that has been base64-encoded".
    if !BASE64.decode(key).is_ok_and(|raw| raw.len() == 16) {
        return Err(HandshakeError::new(
            400,
            "Sec-WebSocket-Key is not 16 bytes of base64",
        ));
    }
    Ok(Some(UpgradeRequest {
        target,
        headers,
        accept: accept_key(key),
        len,
    }))
}

const TOO_LARGE: HandshakeError = HandshakeError::new(431, "request headers too large");
const VERSION_UNSUPPORTED: HandshakeError =
    HandshakeError::new(426, "only WebSocket version 13 is supported");

/// Computes `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (§4.2.2).
pub fn accept_key(key: &[u8]) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(WEBSOCKET_GUID.as_bytes());
    BASE64.encode(sha1.finalize())
}

/// Headers the handshake sets itself; a handler may not add them.
const RESERVED_HEADERS: [&str; 5] = [
    "upgrade",
    "connection",
    "content-length",
    "transfer-encoding",
    "sec-websocket-",
];

/// A header a handler asked to add to the `101` answer that cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidHeader {
    /// The header's name as given.
    pub name: String,
    /// Why it cannot be sent.
    pub reason: &'static str,
}

impl std::fmt::Display for InvalidHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "header {:?}: {}", self.name, self.reason)
    }
}

/// The `101 Switching Protocols` answer that opens the connection, with the chosen
/// `subprotocol` (the caller checks that the client offered it), the negotiated `extensions`
/// (the `Sec-WebSocket-Extensions` value) and extra `headers`.
pub fn accept_response(
    accept: &str,
    subprotocol: Option<&str>,
    extensions: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<Vec<u8>, InvalidHeader> {
    let mut answer = String::with_capacity(160);
    answer.push_str(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: ",
    );
    answer.push_str(accept);
    answer.push_str("\r\n");
    if let Some(protocol) = subprotocol {
        if !is_token(protocol) {
            return Err(InvalidHeader {
                name: "Sec-WebSocket-Protocol".to_owned(),
                reason: "a subprotocol must be an HTTP token",
            });
        }
        answer.push_str(&format!("Sec-WebSocket-Protocol: {protocol}\r\n"));
    }
    if let Some(extensions) = extensions {
        if !is_field_value(extensions) {
            return Err(InvalidHeader {
                name: "Sec-WebSocket-Extensions".to_owned(),
                reason: "the value contains a control character",
            });
        }
        answer.push_str(&format!("Sec-WebSocket-Extensions: {extensions}\r\n"));
    }
    for &(name, value) in headers {
        let invalid = |reason| InvalidHeader {
            name: name.to_owned(),
            reason,
        };
        let lower = name.to_ascii_lowercase();
        if !is_token(name) {
            return Err(invalid("the name is not an HTTP token"));
        }
        if RESERVED_HEADERS.iter().any(|r| lower.starts_with(r)) {
            return Err(invalid("the handshake sets this header itself"));
        }
        if !is_field_value(value) {
            return Err(invalid("the value contains a control character"));
        }
        answer.push_str(&format!("{name}: {value}\r\n"));
    }
    answer.push_str("\r\n");
    Ok(answer.into_bytes())
}

/// An HTTP error answer with a plain-text body; the connection closes after it.
pub fn error_response(status: u16, reason: &str) -> Vec<u8> {
    let extra = match status {
        405 => "Allow: GET\r\n",
        426 => "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n",
        _ => "",
    };
    format!(
        "HTTP/1.1 {status} {}\r\n{extra}Content-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{reason}\n",
        status_text(status),
        reason.len() + 1,
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\n\
        Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Origin: http://example.com\r\nSec-WebSocket-Version: 13\r\n\r\n";

    fn parse(buf: &[u8]) -> Result<Option<(String, String, usize)>, HandshakeError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        parse_request(buf, 8192, &mut headers)
            .map(|r| r.map(|r| (r.target.to_owned(), r.accept, r.len)))
    }

    #[test]
    fn computes_the_rfc_accept_key() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn accepts_the_rfc_request_and_reports_its_length() {
        let mut buf = RFC_REQUEST.to_vec();
        buf.extend_from_slice(b"\x81\x80");
        let (target, accept, len) = parse(&buf).unwrap().unwrap();
        assert_eq!(target, "/chat");
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(len, RFC_REQUEST.len());
    }

    #[test]
    fn waits_for_the_rest_of_a_partial_request() {
        assert_eq!(parse(&RFC_REQUEST[..40]), Ok(None));
    }

    #[test]
    fn accepts_connection_token_lists_in_any_case() {
        let request = String::from_utf8(RFC_REQUEST.to_vec())
            .unwrap()
            .replace("Connection: Upgrade", "connection: keep-alive, UPGRADE")
            .replace("Upgrade: websocket", "upgrade: WebSocket");
        assert!(parse(request.as_bytes()).unwrap().is_some());
    }

    #[test]
    fn refuses_bad_requests_with_the_right_status() {
        let text = String::from_utf8(RFC_REQUEST.to_vec()).unwrap();
        let cases = [
            (text.replace("GET", "POST"), 405),
            (text.replace("HTTP/1.1", "HTTP/1.0"), 400),
            (text.replace("Version: 13", "Version: 8"), 426),
            (text.replace("Upgrade: websocket\r\n", ""), 400),
            (
                text.replace("Connection: Upgrade", "Connection: keep-alive"),
                400,
            ),
            (text.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="), 400),
            (text.replace("Host: server.example.com\r\n", ""), 400),
            ("GET / HTTP/1.1\r\nHost x\r\n\r\n".to_owned(), 400),
        ];
        for (request, status) in cases {
            assert_eq!(
                parse(request.as_bytes()).unwrap_err().status,
                status,
                "{request}"
            );
        }
    }

    #[test]
    fn refuses_oversized_headers_with_431() {
        let mut big = b"GET / HTTP/1.1\r\nX-Fill: ".to_vec();
        big.resize(9000, b'a');
        assert_eq!(parse(&big).unwrap_err().status, 431);
    }

    #[test]
    fn error_answers_carry_the_headers_their_status_needs() {
        let answer = String::from_utf8(error_response(426, "version")).unwrap();
        assert!(answer.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(answer.contains("Sec-WebSocket-Version: 13\r\n"));
        let answer = String::from_utf8(error_response(405, "method")).unwrap();
        assert!(answer.contains("Allow: GET\r\n"));
    }

    #[test]
    fn accept_answer_carries_the_subprotocol_and_extra_headers() {
        let answer = accept_response("k=", Some("chat.v1"), None, &[("X-Node", "a")]).unwrap();
        assert_eq!(
            String::from_utf8(answer).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: k=\r\nSec-WebSocket-Protocol: chat.v1\r\nX-Node: a\r\n\r\n"
        );
    }

    #[test]
    fn accept_answer_refuses_reserved_or_malformed_headers() {
        let reason =
            |headers: &[(&str, &str)]| accept_response("k=", None, None, headers).unwrap_err();
        assert_eq!(
            reason(&[("Connection", "close")]).reason,
            "the handshake sets this header itself"
        );
        assert_eq!(
            reason(&[("sec-websocket-extensions", "x")]).reason,
            "the handshake sets this header itself"
        );
        assert_eq!(
            reason(&[("Bad Name", "x")]).reason,
            "the name is not an HTTP token"
        );
        assert_eq!(
            reason(&[("X-A", "1\r\nX-B: 2")]).reason,
            "the value contains a control character"
        );
        assert!(accept_response("k=", Some("two words"), None, &[]).is_err());
    }
}
