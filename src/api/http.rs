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

/// What `RequestParser::parse` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A whole request, and how many input bytes it used.
    Complete(HttpRequest, usize),
    /// More input is needed; `expects_continue` when the head is complete and the client waits
    /// for `100 Continue` before sending its body.
    Incomplete {
        /// The client asked for `100 Continue`.
        expects_continue: bool,
        /// The request so far, once its head is complete (a chunked body as far as it
        /// arrived; a `Content-Length` body only when complete): enough to refuse it (401,
        /// 404, 405) before the body is read.
        head: Option<&'a HttpRequest>,
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

const HEAD_TOO_LARGE: HttpError = refuse(431, "request headers too large");
const BODY_TOO_LARGE: HttpError = refuse(413, "request body too large");

/// Parses one connection's requests as their bytes arrive, resuming where the last call
/// stopped: each input byte is scanned once, a head is parsed again only when a further line
/// of it is complete (at most once per read), and a body is copied once.
///
/// Each call is given every byte received since the last complete request (the buffer only
/// grows between calls). After `Complete` the next call starts a new request at the start of
/// what it is given; after an error the parser starts over. A head is judged on its complete
/// lines only, so the answer is the same however the bytes were split into reads.
#[derive(Debug)]
pub struct RequestParser {
    limits: Limits,
    state: State,
}

#[derive(Debug)]
enum State {
    /// Waiting for the end of the head: `seen` bytes were scanned, and the last newline among
    /// them ends at `lines`.
    Head { seen: usize, lines: usize },
    /// The head is parsed; the body is on its way.
    Body(Box<Pending>),
}

const FRESH: State = State::Head { seen: 0, lines: 0 };

/// A request whose head is parsed.
#[derive(Debug)]
struct Pending {
    /// The head, and the body as far as it arrived.
    request: HttpRequest,
    head_len: usize,
    expects_continue: bool,
    framing: Framing,
}

#[derive(Debug)]
enum Framing {
    Length(usize),
    Chunked(Chunked),
}

/// Where a chunked body's decoding stands.
#[derive(Debug, Default)]
struct Chunked {
    /// Bytes after the head consumed so far.
    pos: usize,
    /// Bytes of the current line already known to hold no CRLF.
    scanned: usize,
    step: ChunkStep,
}

#[derive(Debug, Default, Clone, Copy)]
enum ChunkStep {
    /// A chunk-size line, with optional extensions.
    #[default]
    SizeLine,
    /// This many data bytes of the current chunk are still to come.
    Data(usize),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines, up to the blank line.
    Trailer,
}

impl RequestParser {
    /// A parser for one connection.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            state: FRESH,
        }
    }

    /// Parses the request at the start of `buf`, which holds every byte received since the
    /// last complete request.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Parsed<'_>, HttpError> {
        match self.advance(buf) {
            Err(error) => {
                self.state = FRESH;
                Err(error)
            }
            Ok(Some((request, used))) => Ok(Parsed::Complete(request, used)),
            Ok(None) => Ok(match &self.state {
                State::Head { .. } => Parsed::Incomplete {
                    expects_continue: false,
                    head: None,
                },
                State::Body(pending) => Parsed::Incomplete {
                    expects_continue: pending.expects_continue,
                    head: Some(&pending.request),
                },
            }),
        }
    }

    /// Forgets the request in progress (its input was thrown away).
    pub fn reset(&mut self) {
        self.state = FRESH;
    }

    fn advance(&mut self, buf: &[u8]) -> Result<Option<(HttpRequest, usize)>, HttpError> {
        if let State::Head { seen, lines } = &mut self.state {
            match parse_head(buf, seen, lines, &self.limits)? {
                Some(pending) => self.state = State::Body(pending),
                None => return Ok(None),
            }
        }
        let State::Body(pending) = &mut self.state else {
            return Ok(None);
        };
        let Some(used) = pending.read_body(buf, &self.limits)? else {
            return Ok(None);
        };
        let State::Body(done) = std::mem::replace(&mut self.state, FRESH) else {
            return Ok(None);
        };
        Ok(Some((done.request, used)))
    }
}

/// Parses the head once a further line of it is complete (or the head limit is passed);
/// `None` while it is not complete.
fn parse_head(
    buf: &[u8],
    seen: &mut usize,
    lines: &mut usize,
    limits: &Limits,
) -> Result<Option<Box<Pending>>, HttpError> {
    // Only the bytes the head may span are looked at: the answer to a head over the limit is
    // 431 however its bytes arrived, not 400 when a malformed byte past the limit came in the
    // same read.
    let window_end = buf.len().min(limits.max_head + 1);
    let new_line = buf[(*seen).min(window_end)..window_end]
        .iter()
        .rposition(|&b| b == b'\n')
        .map(|at| *lines = *seen + at + 1)
        .is_some();
    *seen = window_end;
    let over_limit = buf.len() > limits.max_head;
    if !new_line && !over_limit {
        return Ok(None);
    }
    let window = if over_limit {
        &buf[..window_end]
    } else {
        &buf[..*lines]
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(window) {
        Ok(httparse::Status::Complete(len)) if len <= limits.max_head => len,
        Ok(httparse::Status::Complete(_)) => return Err(HEAD_TOO_LARGE),
        Ok(httparse::Status::Partial) if over_limit => return Err(HEAD_TOO_LARGE),
        Ok(httparse::Status::Partial) => return Ok(None),
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
    Ok(Some(Box::new(Pending {
        request: HttpRequest {
            method: parsed.method.unwrap_or_default().to_owned(),
            target: parsed.path.unwrap_or("/").to_owned(),
            headers: all_headers
                .iter()
                .map(|h| (h.name.to_owned(), h.value.to_vec()))
                .collect(),
            body: Vec::new(),
            keep_alive,
        },
        head_len,
        expects_continue: version >= 1 && lists_token(header("expect"), "100-continue"),
        framing,
    })))
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
                Ok(Framing::Chunked(Chunked::default()))
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

impl Pending {
    /// Takes what arrived of the body; the bytes the whole request used once it is complete.
    fn read_body(&mut self, buf: &[u8], limits: &Limits) -> Result<Option<usize>, HttpError> {
        let rest = &buf[self.head_len..];
        let body_len = match &mut self.framing {
            Framing::Length(len) if rest.len() >= *len => {
                self.request.body = rest[..*len].to_vec();
                *len
            }
            Framing::Length(_) => return Ok(None),
            Framing::Chunked(chunked) => {
                match chunked.advance(rest, &mut self.request.body, limits)? {
                    Some(used) => used,
                    None => return Ok(None),
                }
            }
        };
        Ok(Some(self.head_len + body_len))
    }
}

impl Chunked {
    /// Decodes what arrived of a chunked body into `body`; the bytes the body used once it is
    /// complete.
    fn advance(
        &mut self,
        rest: &[u8],
        body: &mut Vec<u8>,
        limits: &Limits,
    ) -> Result<Option<usize>, HttpError> {
        loop {
            match self.step {
                ChunkStep::SizeLine => {
                    let Some(len) = self.line(rest, MAX_CHUNK_LINE)? else {
                        return Ok(None);
                    };
                    let line = &rest[self.pos..self.pos + len];
                    let size_text = line.split(|&b| b == b';').next().unwrap_or_default();
                    let size = std::str::from_utf8(size_text.trim_ascii())
                        .ok()
                        .and_then(|s| usize::from_str_radix(s, 16).ok())
                        .ok_or(refuse(400, "invalid chunk size"))?;
                    self.consume(len + 2, body, limits)?;
                    self.step = if size == 0 {
                        ChunkStep::Trailer
                    } else if body.len().saturating_add(size) > limits.max_body {
                        return Err(BODY_TOO_LARGE);
                    } else {
                        ChunkStep::Data(size)
                    };
                }
                ChunkStep::Data(left) => {
                    let take = left.min(rest.len() - self.pos);
                    body.extend_from_slice(&rest[self.pos..self.pos + take]);
                    self.pos += take;
                    if take < left {
                        self.step = ChunkStep::Data(left - take);
                        return Ok(None);
                    }
                    self.step = ChunkStep::DataEnd;
                }
                ChunkStep::DataEnd => {
                    let Some(end) = rest.get(self.pos..self.pos + 2) else {
                        return Ok(None);
                    };
                    if end != b"\r\n" {
                        return Err(refuse(400, "chunk not followed by CRLF"));
                    }
                    self.consume(2, body, limits)?;
                    self.step = ChunkStep::SizeLine;
                }
                ChunkStep::Trailer => {
                    // Trailer fields, ignored, then the blank line.
                    let Some(len) = self.line(rest, limits.max_head)? else {
                        return Ok(None);
                    };
                    self.consume(len + 2, body, limits)?;
                    if len == 0 {
                        return Ok(Some(self.pos));
                    }
                }
            }
        }
    }

    /// Moves past `framing` bytes that are not body. Chunk lines, extensions, CRLFs and
    /// trailers may add up to at most `max_head`, so that what a request buffers stays under
    /// head + body limits.
    fn consume(&mut self, framing: usize, body: &[u8], limits: &Limits) -> Result<(), HttpError> {
        self.pos += framing;
        if self.pos - body.len() > limits.max_head {
            return Err(refuse(413, "chunked framing too large"));
        }
        Ok(())
    }

    /// The length of the line at `pos` (without its CRLF), `None` if not yet complete; the
    /// part already scanned is not scanned again.
    fn line(&mut self, rest: &[u8], max_line: usize) -> Result<Option<usize>, HttpError> {
        const TOO_LONG: HttpError = refuse(400, "line too long in chunked body");
        // A CR at the end of the scanned part may start the CRLF.
        let from = self.pos + self.scanned.saturating_sub(1);
        match rest[from..].windows(2).position(|w| w == b"\r\n") {
            Some(at) => {
                self.scanned = 0;
                let len = from - self.pos + at;
                if len <= max_line {
                    Ok(Some(len))
                } else {
                    Err(TOO_LONG)
                }
            }
            None => {
                self.scanned = rest.len() - self.pos;
                if self.scanned > max_line + 1 {
                    Err(TOO_LONG)
                } else {
                    Ok(None)
                }
            }
        }
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
        match RequestParser::new(LIMITS).parse(buf) {
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
                RequestParser::new(LIMITS).parse(&request[..cut]),
                Ok(Parsed::Incomplete { .. })
            ));
        }
        let (parsed, used) = complete(request);
        assert_eq!((&parsed.body[..], used), (&b"abcde"[..], request.len()));
    }

    #[test]
    fn one_parser_fed_byte_by_byte_finds_what_one_read_finds() {
        let pipelined = b"POST /broadcast HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
            3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: t\r\n\r\n\
            POST /send/a HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi";
        let mut parser = RequestParser::new(LIMITS);
        let (mut buffer, mut requests) = (Vec::new(), Vec::new());
        for &byte in pipelined.iter() {
            buffer.push(byte);
            while let Parsed::Complete(request, used) = parser.parse(&buffer).unwrap() {
                buffer.drain(..used);
                requests.push(request);
            }
        }
        let bodies: Vec<&[u8]> = requests.iter().map(|r| &r.body[..]).collect();
        assert_eq!(bodies, [&b"abcde"[..], b"hi"]);
        assert!(buffer.is_empty());
    }

    #[test]
    fn a_head_is_judged_on_complete_lines_however_it_arrives() {
        // The bad header byte is only looked at once its line is complete, in one read or two.
        let bad = b"GET / HTTP/1.1\r\nBad\x01: x\r\n\r\n";
        let mut parser = RequestParser::new(LIMITS);
        assert!(matches!(
            parser.parse(&bad[..20]),
            Ok(Parsed::Incomplete { head: None, .. })
        ));
        assert_eq!(parser.parse(bad).unwrap_err().status, 400);
        assert_eq!(
            RequestParser::new(LIMITS).parse(bad).unwrap_err().status,
            400
        );
    }

    #[test]
    fn asks_for_continue_only_once_the_head_is_complete() {
        let head = b"POST /send/a HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
        assert!(matches!(
            RequestParser::new(LIMITS).parse(&head[..head.len() - 2]),
            Ok(Parsed::Incomplete {
                expects_continue: false,
                head: None
            })
        ));
        let mut parser = RequestParser::new(LIMITS);
        let Ok(Parsed::Incomplete {
            expects_continue: true,
            head: Some(parsed),
        }) = parser.parse(head)
        else {
            panic!("a complete head waiting for its body");
        };
        assert_eq!((parsed.method.as_str(), parsed.path()), ("POST", "/send/a"));
    }

    #[test]
    fn refuses_oversized_and_ambiguous_requests() {
        let status = |buf: &[u8]| RequestParser::new(LIMITS).parse(buf).unwrap_err().status;
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
        assert_eq!(
            RequestParser::new(LIMITS)
                .parse(&trailers)
                .unwrap_err()
                .status,
            413
        );
        // One byte of body per chunk, each with a long extension.
        let mut extensions = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..10 {
            extensions.extend_from_slice(b"1;ext=");
            extensions.extend_from_slice(&[b'e'; 200]);
            extensions.extend_from_slice(b"\r\nx\r\n");
        }
        assert_eq!(
            RequestParser::new(LIMITS)
                .parse(&extensions)
                .unwrap_err()
                .status,
            413
        );
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
