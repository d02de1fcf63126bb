//! HTTP/1.1 pieces shared by the WebSocket handshake and the push API: finding headers, reading
//! comma-separated token lists, checking header names and values, and reason phrases.
//!
//! The one place that reads header tokens. Pure functions over `httparse` headers and byte
//! slices; no allocation.

/// The first header named `name` (any case), if present.
pub fn first_header<'b>(headers: &[httparse::Header<'b>], name: &str) -> Option<&'b [u8]> {
    header_values(headers, name).next()
}

/// Every value of the headers named `name` (any case), in the order received.
pub fn header_values<'h, 'b: 'h>(
    headers: &'h [httparse::Header<'b>],
    name: &'h str,
) -> impl Iterator<Item = &'b [u8]> + 'h {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// The items of a comma-separated header value, trimmed, empty ones skipped (RFC 9110 §5.6.1).
pub fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|item| !item.is_empty())
}

/// Whether any of `values` (comma-separated lists) contains `token`, ignoring case.
pub fn lists_token<'v>(mut values: impl Iterator<Item = &'v [u8]>, token: &str) -> bool {
    let token = token.as_bytes();
    values.any(|value| {
        value
            .split(|&b| b == b',')
            .any(|item| item.trim_ascii().eq_ignore_ascii_case(token))
    })
}

/// Whether `name` is a valid header name (an RFC 9110 §5.6.2 token).
pub fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `value` can be sent as a header value: no CR, LF or NUL (which would let it end the
/// header or the head), no other control characters but tab.
pub fn is_field_value(value: &str) -> bool {
    value.bytes().all(|b| b == b'\t' || !b.is_ascii_control())
}

/// The standard reason phrase for the statuses this server sends.
pub fn status_text(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tokens_in_lists_across_headers_in_any_case() {
        let headers = [
            httparse::Header {
                name: "Connection",
                value: b"keep-alive",
            },
            httparse::Header {
                name: "connection",
                value: b" foo ,, UPGRADE",
            },
        ];
        assert!(lists_token(
            header_values(&headers, "CONNECTION"),
            "upgrade"
        ));
        assert!(!lists_token(header_values(&headers, "connection"), "close"));
        assert_eq!(
            first_header(&headers, "connection"),
            Some(&b"keep-alive"[..])
        );
        let items: Vec<&[u8]> = list_items(b" a, ,b ,").collect();
        assert_eq!(items, [&b"a"[..], b"b"]);
    }

    #[test]
    fn checks_header_names_and_values() {
        assert!(is_token("X-Request-Id"));
        assert!(!is_token("Bad Name"));
        assert!(!is_token(""));
        assert!(is_field_value("a\tb c"));
        assert!(!is_field_value("a\r\nInjected: yes"));
        assert!(!is_field_value("nul\0"));
    }
}
