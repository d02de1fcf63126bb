//! A scripted HTTP/1.1 client for the push API: writes exact bytes, reads responses framed by
//! the status line, the headers and a `Content-Length` body. It runs on `RawClient`'s socket,
//! so every read and write is bounded by `WAIT`; nothing sleeps.

use std::net::SocketAddr;

use serde_json::Value;

use super::RawClient;

/// One HTTP response as received.
#[derive(Debug)]
pub struct Response {
    /// The head exactly as sent: status line, headers and the blank line.
    pub head: String,
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The status code from the status line, which must start with `HTTP/1.1 `.
    pub fn status(&self) -> u16 {
        self.status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status code in {:?}", self.status_line))
    }

    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("response body is UTF-8")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {:?}", self.text()))
    }

    /// Whether the response says the connection closes after it.
    pub fn closes(&self) -> bool {
        self.header("Connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// A connection to the push API, on the harness's raw socket client (same connect, timeouts
/// and reads; this adds HTTP response framing).
pub struct Http {
    raw: RawClient,
}

impl Http {
    pub fn connect(addr: SocketAddr) -> Self {
        Self {
            raw: RawClient::connect(addr),
        }
    }

    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.raw.send_raw(bytes.as_ref());
    }

    /// Sends FIN: the server reads end of stream after what was sent.
    pub fn finish_sending(&mut self) {
        self.raw.stream.shutdown(std::net::Shutdown::Write).unwrap();
    }

    /// Bytes received but not yet read as part of a response.
    pub fn buffered(&self) -> &[u8] {
        &self.raw.buf
    }

    /// Reads a response head (through the blank line), leaving anything after it buffered:
    /// all there is of a response to `HEAD`, or of an interim `100 Continue`.
    pub fn read_head(&mut self) -> Response {
        let end = loop {
            if let Some(pos) = self.raw.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            assert!(
                self.raw.fill(),
                "connection closed before a complete response head; got {:?}",
                String::from_utf8_lossy(&self.raw.buf)
            );
        };
        let head = String::from_utf8(self.raw.buf.drain(..end).collect()).expect("head is UTF-8");
        let mut lines = head.trim_end_matches("\r\n").split("\r\n");
        let status_line = lines.next().unwrap().to_owned();
        let headers = lines
            .map(|line| {
                let (name, value) = line
                    .split_once(':')
                    .unwrap_or_else(|| panic!("malformed header line {line:?}"));
                (name.to_owned(), value.trim().to_owned())
            })
            .collect();
        Response {
            head,
            status_line,
            headers,
            body: Vec::new(),
        }
    }

    /// Reads one whole response: the head, then a body of `Content-Length` bytes (none if the
    /// header is absent).
    pub fn read_response(&mut self) -> Response {
        let mut response = self.read_head();
        let len = response
            .header("Content-Length")
            .map_or(0, |v| v.parse::<usize>().expect("numeric Content-Length"));
        while self.raw.buf.len() < len {
            assert!(self.raw.fill(), "connection closed inside a response body");
        }
        response.body = self.raw.buf.drain(..len).collect();
        response
    }

    /// Sends `bytes` and reads one response.
    pub fn request(&mut self, bytes: impl AsRef<[u8]>) -> Response {
        self.send(bytes);
        self.read_response()
    }

    /// Asserts the server closes the connection without sending anything more.
    pub fn expect_eof(&mut self) {
        let extra = self.raw.fill();
        assert!(
            !extra && self.raw.buf.is_empty(),
            "expected EOF, got {:?}",
            String::from_utf8_lossy(&self.raw.buf)
        );
    }
}
