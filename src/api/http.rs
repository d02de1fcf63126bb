//! HTTP/1.1 for the push API, sans-IO: request parsing (pipelined, with bodies framed by
//! `Content-Length` or chunked encoding) and response encoding.
//!
//! Limits are checked before anything is stored: a head over `max_head` is refused with 431
//! as soon as it is seen to be too long, a declared body over `max_body` with 413 before it
//! arrives. A request with both `Content-Length` and `Transfer-Encoding` is refused (400), as
//! its framing is ambiguous.

use crate::protocol::http::{header_values, lists_token, status_text};

/// Size limits for one request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Request line and headers, in bytes.
    pub max_head: usize,
    /// Body, in bytes (after chunked decoding).
    pub max_body: usize,
}

/// A complete request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// The method, e.g. `POST`.
    pub method: String,
    /// The request target, path and query.
    pub target: String,
    /// Headers in the order received.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
}

impl HttpRequest {
    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(&self.target, |(path, _)| path)
    }

    /// The query string after `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, query)| query)
    }

    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// What `parse_request` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A whole request, and how many input bytes it used.
    Complete(HttpRequest, usize),
    /// More input is needed; `expects_continue` when the head is complete and the client waits
    /// for `100 Continue` before sending its body.
    Incomplete {
        /// The client asked for `100 Continue`.
        expects_continue: bool,
        /// The request so far, without its body, once the head is complete: enough to refuse
        /// it (401, 404, 405) before the body is read.
        head: Option<Box<HttpRequest>>,
    },
}

/// A request refused with an HTTP status; the connection closes after the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpError {
    /// The status code.
    pub status: u16,
    /// What was wrong.
    pub message: &'static str,
}

const fn refuse(status: u16, message: &'static str) -> HttpError {
    HttpError { status, message }
}

/// Most headers a request may carry.
const MAX_HEADERS: usize = 64;

/// Longest chunk-size line accepted.
const MAX_CHUNK_LINE: usize = 1024;

/// Parses the request at the start of `buf`.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Parsed, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    // Only the bytes the head may span are parsed: the answer to a head over the limit is 431
    // however the bytes arrived, not 400 when a malformed byte past the limit came in the same
    // read.
    let window = &buf[..buf.len().min(limits.max_head + 1)];
    let head_len = match parsed.parse(window) {
        Ok(httparse::Status::Complete(len)) if len <= limits.max_head => len,
        Ok(httparse::Status::Complete(_)) => return Err(HEAD_TOO_LARGE),
        Ok(httparse::Status::Partial) if buf.len() > limits.max_head => return Err(HEAD_TOO_LARGE),
        Ok(httparse::Status::Partial) => {
            return Ok(Parsed::Incomplete {
                expects_continue: false,
                head: None,
            })
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HEAD_TOO_LARGE),
        Err(_) => return Err(refuse(400, "malformed HTTP request")),
    };
    let version = parsed.version.unwrap_or(1);
    let all_headers: &[httparse::Header<'_>] = parsed.headers;
    let header = |name: &'static str| header_values(all_headers, name);
    let framing = body_framing(
        header("content-length"),
        header("transfer-encoding"),
        limits,
    )?;
    let connection_has = |token: &str| lists_token(header("connection"), token);
    let keep_alive = if version >= 1 {
        !connection_has("close")
    } else {
        connection_has("keep-alive")
    };
    let expects_continue = version >= 1 && lists_token(header("expect"), "100-continue");
    let rest = &buf[head_len..];
    let head = |body| HttpRequest {
        method: parsed.method.unwrap_or_default().to_owned(),
        target: parsed.path.unwrap_or("/").to_owned(),
        headers: all_headers
            .iter()
            .map(|h| (h.name.to_owned(), h.value.to_vec()))
            .collect(),
        body,
        keep_alive,
    };
    let incomplete = || {
        Ok(Parsed::Incomplete {
            expects_continue,
            head: Some(Box::new(head(Vec::new()))),
        })
    };
    let (body, body_len) = match framing {
        Framing::Length(len) if rest.len() >= len => (rest[..len].to_vec(), len),
        Framing::Length(_) => return incomplete(),
        Framing::Chunked => match decode_chunked(rest, limits)? {
            Some(done) => done,
            None => return incomplete(),
        },
    };
    Ok(Parsed::Complete(head(body), head_len + body_len))
}

const HEAD_TOO_LARGE: HttpError = refuse(431, "request headers too large");
const BODY_TOO_LARGE: HttpError = refuse(413, "request body too large");

enum Framing {
    Length(usize),
    Chunked,
}

fn body_framing<'a>(
    mut lengths: impl Iterator<Item = &'a [u8]>,
    mut encodings: impl Iterator<Item = &'a [u8]>,
    limits: &Limits,
) -> Result<Framing, HttpError> {
    let first_length = lengths.next();
    match (first_length, encodings.next()) {
        (Some(_), Some(_)) => Err(refuse(
            400,
            "both Content-Length and Transfer-Encoding: ambiguous body",
        )),
        (None, Some(encoding)) => {
            if encodings.next().is_none() && encoding.trim_ascii().eq_ignore_ascii_case(b"chunked")
            {
                Ok(Framing::Chunked)
            } else {
                Err(refuse(501, "only chunked transfer encoding is supported"))
            }
        }
        (Some(length), None) => {
            let len = parse_length(length)?;
            // Repeated Content-Length headers must all agree (RFC 9110 §8.6).
            for other in lengths {
                if parse_length(other)? != len {
                    return Err(refuse(400, "conflicting Content-Length headers"));
                }
            }
            if len > limits.max_body {
                return Err(BODY_TOO_LARGE);
            }
            Ok(Framing::Length(len))
        }
        (None, None) => Ok(Framing::Length(0)),
    }
}

fn parse_length(value: &[u8]) -> Result<usize, HttpError> {
    let value = value.trim_ascii();
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(refuse(400, "invalid Content-Length"));
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or(BODY_TOO_LARGE)
}

/// Decodes a chunked body; `None` while incomplete, else the body and the bytes it used.
fn decode_chunked(buf: &[u8], limits: &Limits) -> Result<Option<(Vec<u8>, usize)>, HttpError> {
    let mut body = Vec::new();
    let mut pos = 0;
    // Chunk lines, extensions, CRLFs and trailers: bytes that are not body may add up to at
    // most `max_head`, so that what a request buffers stays under head + body limits.
    let framing_ok = |pos: usize, body: &Vec<u8>| {
        if pos - body.len() > limits.max_head {
            Err(refuse(413, "chunked framing too large"))
        } else {
            Ok(())
        }
    };
    loop {
        let Some(line_len) = find_crlf(&buf[pos..], MAX_CHUNK_LINE)? else {
            return Ok(None);
        };
        let line = &buf[pos..pos + line_len];
        let size_text = line.split(|&b| b == b';').next().unwrap_or_default();
        let size = std::str::from_utf8(size_text.trim_ascii())
            .ok()
            .and_then(|s| usize::from_str_radix(s, 16).ok())
            .ok_or(refuse(400, "invalid chunk size"))?;
        pos += line_len + 2;
        framing_ok(pos, &body)?;
        if size == 0 {
            // Trailer fields, ignored, then the blank line.
            loop {
                let Some(len) = find_crlf(&buf[pos..], limits.max_head)? else {
                    return Ok(None);
                };
                pos += len + 2;
                framing_ok(pos, &body)?;
                if len == 0 {
                    return Ok(Some((body, pos)));
                }
            }
        }
        if body.len().saturating_add(size) > limits.max_body {
            return Err(BODY_TOO_LARGE);
        }
        let Some(chunk) = buf.get(pos..pos + size + 2) else {
            return Ok(None);
        };
        if &chunk[size..] != b"\r\n" {
            return Err(refuse(400, "chunk not followed by CRLF"));
        }
        body.extend_from_slice(&chunk[..size]);
        pos += size + 2;
        framing_ok(pos, &body)?;
    }
}

/// The length of the line at the start of `buf` (without CRLF), `None` if not yet complete.
fn find_crlf(buf: &[u8], max_line: usize) -> Result<Option<usize>, HttpError> {
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(len) if len <= max_line => Ok(Some(len)),
        Some(_) => Err(refuse(400, "line too long in chunked body")),
        None if buf.len() > max_line + 1 => Err(refuse(400, "line too long in chunked body")),
        None => Ok(None),
    }
}

/// The interim answer to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Encodes a response. `headers` are extra header lines (name, value).
pub fn encode_response(
    status: u16,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
    headers: &[(&str, &str)],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + body.len());
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", status_text(status)).as_bytes());
    out.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
    out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_head: 1024,
        max_body: 100,
    };

    fn complete(buf: &[u8]) -> (HttpRequest, usize) {
        match parse_request(buf, &LIMITS) {
            Ok(Parsed::Complete(request, used)) => (request, used),
            other => panic!("expected a complete request, got {other:?}"),
        }
    }

    #[test]
    fn parses_pipelined_requests_with_bodies_one_at_a_time() {
        let two =
            b"POST /send/a HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiGET /health HTTP/1.1\r\n\r\n";
        let (first, used) = complete(two);
        assert_eq!(
            (first.method.as_str(), first.path(), &first.body[..]),
            ("POST", "/send/a", &b"hi"[..])
        );
        let (second, rest) = complete(&two[used..]);
        assert_eq!((second.path(), used + rest), ("/health", two.len()));
        assert!(second.keep_alive);
    }

    #[test]
    fn decodes_chunked_bodies_across_reads() {
        let request = b"POST /broadcast HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: t\r\n\r\n";
        for cut in 0..request.len() {
            assert!(matches!(
                parse_request(&request[..cut], &LIMITS),
                Ok(Parsed::Incomplete { .. })
            ));
        }
        let (parsed, used) = complete(request);
        assert_eq!((&parsed.body[..], used), (&b"abcde"[..], request.len()));
    }

    #[test]
    fn asks_for_continue_only_once_the_head_is_complete() {
        let head = b"POST /send/a HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
        assert!(matches!(
            parse_request(&head[..head.len() - 2], &LIMITS),
            Ok(Parsed::Incomplete {
                expects_continue: false,
                head: None
            })
        ));
        let Ok(Parsed::Incomplete {
            expects_continue: true,
            head: Some(parsed),
        }) = parse_request(head, &LIMITS)
        else {
            panic!("a complete head waiting for its body");
        };
        assert_eq!((parsed.method.as_str(), parsed.path()), ("POST", "/send/a"));
    }

    #[test]
    fn refuses_oversized_and_ambiguous_requests() {
        let status = |buf: &[u8]| parse_request(buf, &LIMITS).unwrap_err().status;
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n"),
            413
        );
        assert_eq!(status(&[b'a'; 1100]), 431);
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
            501
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n"),
            413
        );
        assert_eq!(status(b"NOT HTTP\r\n\r\n"), 400);
    }

    #[test]
    fn chunked_framing_beyond_the_head_limit_is_refused() {
        // Endless trailer lines.
        let mut trailers = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n".to_vec();
        for _ in 0..100 {
            trailers.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(parse_request(&trailers, &LIMITS).unwrap_err().status, 413);
        // One byte of body per chunk, each with a long extension.
        let mut extensions = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..10 {
            extensions.extend_from_slice(b"1;ext=");
            extensions.extend_from_slice(&[b'e'; 200]);
            extensions.extend_from_slice(b"\r\nx\r\n");
        }
        assert_eq!(parse_request(&extensions, &LIMITS).unwrap_err().status, 413);
    }

    #[test]
    fn follows_keep_alive_rules_of_each_version() {
        assert!(
            !complete(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
                .0
                .keep_alive
        );
        assert!(!complete(b"GET / HTTP/1.0\r\n\r\n").0.keep_alive);
        assert!(
            complete(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .0
                .keep_alive
        );
    }

    #[test]
    fn encodes_responses_with_length_and_close() {
        let response = encode_response(404, "application/json", b"{}", false, &[("Allow", "GET")]);
        assert_eq!(
            response,
            b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\
              Connection: close\r\nAllow: GET\r\n\r\n{}"
        );
    }
}
