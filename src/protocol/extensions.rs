//! Extension negotiation (RFC 6455 §9.1, RFC 7692 §5 and §7.1): reading a request's
//! `Sec-WebSocket-Extensions` offers and choosing the permessage-deflate configuration to
//! accept.
//!
//! This module owns the offer grammar and the RFC 7692 parameter rules, as pure functions over
//! header values, with no allocation but the response string. The server accepts the first
//! permessage-deflate offer it can honour, in the client's order, and always answers with both
//! `no_context_takeover` parameters, so that one shared compressor and one shared decompressor
//! per reactor ([`super::deflate`]) serve every connection.
//!
//! It must never accept an offer RFC 7692 §7.1 says to decline (an unknown or duplicate
//! parameter, a value where none is allowed, a missing or invalid value), never answer a
//! parameter the client did not make room for (`client_max_window_bits`, §7.1.2.2), and never
//! fail a handshake: a malformed or unusable offer only means no compression for that offer.
//!
//! Case: RFC 6455 §9.1 defines extension names and parameters as `token`s and says nothing of
//! case. The names this module knows are matched ignoring ASCII case, the way the handshake
//! treats `Upgrade: websocket` (§4.2.1): the registered names are lowercase and no two differ
//! only by case, and the answer always spells them in lowercase. Values are numbers.

use std::fmt::Write as _;

use super::deflate::MAX_WINDOW_BITS;

/// The registered name of the extension (RFC 7692 §7).
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

/// The smallest window RFC 7692 lets an offer ask for (`server_max_window_bits=8`, a 256-byte
/// window); zlib cannot compress with it, so an offer that asks for it is declined.
const MIN_OFFERED_WINDOW_BITS: u8 = 8;

/// The permessage-deflate configuration accepted for one connection.
///
/// Both directions are always without context takeover: every message is compressed and
/// inflated on its own. The decompressor has a 32 KiB window, which inflates whatever window
/// the client compresses with, so nothing about the client's window is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The LZ77 window the server compresses this connection's messages with, 9..=15: 15
    /// unless the accepted offer limited it with `server_max_window_bits`.
    pub server_window_bits: u8,
    /// The accepted offer had `server_max_window_bits`, so the answer must carry it
    /// (RFC 7692 §7.1.2.1).
    pub echo_server_max_window_bits: bool,
}

impl DeflateParams {
    /// The exact `Sec-WebSocket-Extensions` value to answer with:
    /// `permessage-deflate; server_no_context_takeover; client_no_context_takeover`, followed by
    /// `; server_max_window_bits=N` when the accepted offer had that parameter.
    ///
    /// Both `no_context_takeover` parameters are sent whatever the offer said. RFC 7692
    /// §7.1.1.1: "A server MAY include the "server_no_context_takeover" extension parameter in
    /// an extension negotiation response even if the extension negotiation offer being
    /// accepted by the extension negotiation response didn't include the
    /// "server_no_context_takeover" extension parameter." §7.1.1.2: "A server MAY include the
    /// "client_no_context_takeover" extension parameter in an extension negotiation response."
    ///
    /// `server_max_window_bits` is echoed with the offered value, because §7.1.2.1 makes
    /// echoing it the way to accept it: "A server accepts an extension negotiation offer with
    /// this parameter by including the "server_max_window_bits" extension parameter in the
    /// extension negotiation response to send back to the client with the same or smaller
    /// value as the offer."
    ///
    /// `client_max_window_bits` is never sent. It is never required: §7.1.2.2 says "If a
    /// received extension negotiation offer has the "client_max_window_bits" extension
    /// parameter, the server MAY include the "client_max_window_bits" extension parameter in
    /// the corresponding extension negotiation response to the offer", and "Absence of this
    /// extension parameter in an extension negotiation response indicates that the server can
    /// receive messages compressed using an LZ77 sliding window of up to 32,768 bytes", which
    /// is true of the shared 15-bit decompressor. And it is forbidden without the client's
    /// consent: "If a received extension negotiation offer doesn't have the
    /// "client_max_window_bits" extension parameter, the corresponding extension negotiation
    /// response to the offer MUST NOT include the "client_max_window_bits" extension
    /// parameter." With client_no_context_takeover a smaller client window would save the
    /// server nothing anyway.
    pub fn response_value(&self) -> String {
        let mut value =
            format!("{PERMESSAGE_DEFLATE}; server_no_context_takeover; client_no_context_takeover");
        if self.echo_server_max_window_bits {
            // Writing to a String cannot fail.
            let _ = write!(
                value,
                "; server_max_window_bits={}",
                self.server_window_bits
            );
        }
        value
    }
}

/// Chooses the permessage-deflate configuration for a request from the values of its
/// `Sec-WebSocket-Extensions` header lines, in the order received; `None` means no
/// compression (no offer, or none this server can honour).
///
/// Every line is a comma-separated list of offers, `name *( ";" param [ "=" value ] )`, a
/// value being a token or a quoted string (RFC 6455 §9.1), with optional whitespace around
/// `;`, `,` and `=`. The first permessage-deflate offer that can be honoured wins (RFC 7692 §5:
/// the order is the client's preference). An offer is declined, and the next one considered,
/// when (§7.1) "The negotiation offer contains an extension parameter not defined for use in
/// an offer", "contains an extension parameter with an invalid value", "contains multiple
/// extension parameters with the same name", or "The server doesn't support the offered
/// configuration": here, `server_max_window_bits=8`, a window zlib cannot compress with. An
/// offer that breaks the grammar is declined too, and reading resumes after the next comma
/// outside a quoted string. Other extensions are ignored.
pub fn negotiate_deflate<'h>(values: impl IntoIterator<Item = &'h [u8]>) -> Option<DeflateParams> {
    values.into_iter().find_map(|value| {
        let mut cursor = Cursor { rest: value };
        loop {
            cursor.skip_whitespace();
            match cursor.rest.first() {
                None => return None,
                Some(b',') => cursor.advance(1),
                Some(_) => match cursor.element() {
                    Ok(Some(offer)) => {
                        if let Some(params) = offer.accept() {
                            return Some(params);
                        }
                    }
                    Ok(None) => {}
                    Err(Malformed) => cursor.skip_element(),
                },
            }
        }
    })
}

/// The parameters of one permessage-deflate offer, each seen at most once.
#[derive(Debug, Default)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value.
    client_max_window_bits: Option<Option<u8>>,
}

/// An offer RFC 7692 §7.1 says to decline.
#[derive(Debug)]
struct Declined;

impl Offer {
    /// Records one parameter, or declines the offer.
    fn apply(&mut self, name: &[u8], value: Option<Value<'_>>) -> Result<(), Declined> {
        // Each parameter: its flag must still be unset (no duplicate), and the value rules.
        if name.eq_ignore_ascii_case(b"server_no_context_takeover") {
            no_value(&mut self.server_no_context_takeover, value)
        } else if name.eq_ignore_ascii_case(b"client_no_context_takeover") {
            no_value(&mut self.client_no_context_takeover, value)
        } else if name.eq_ignore_ascii_case(b"server_max_window_bits") {
            // §7.1.2.1: "This parameter has a decimal integer value without leading zeroes
            // between 8 to 15, inclusive"; the value is not optional in an offer.
            if self.server_max_window_bits.is_some() {
                return Err(Declined);
            }
            self.server_max_window_bits = Some(value.ok_or(Declined)?.window_bits()?);
            Ok(())
        } else if name.eq_ignore_ascii_case(b"client_max_window_bits") {
            // §7.1.2.2: "This parameter has no value or a decimal integer value without
            // leading zeroes between 8 to 15 inclusive".
            if self.client_max_window_bits.is_some() {
                return Err(Declined);
            }
            self.client_max_window_bits = Some(value.map(Value::window_bits).transpose()?);
            Ok(())
        } else {
            Err(Declined)
        }
    }

    /// The configuration to accept this offer with, if this server can honour it.
    fn accept(&self) -> Option<DeflateParams> {
        // Both no_context_takeover parameters are what the server answers anyway, and any
        // client window inflates with the 15-bit decompressor, so only the server's window can
        // make an offer unusable.
        match self.server_max_window_bits {
            Some(bits) if bits < super::deflate::MIN_WINDOW_BITS => None,
            Some(bits) => Some(DeflateParams {
                server_window_bits: bits,
                echo_server_max_window_bits: true,
            }),
            None => Some(DeflateParams {
                server_window_bits: MAX_WINDOW_BITS,
                echo_server_max_window_bits: false,
            }),
        }
    }
}

/// Sets a flag parameter, which must have no value and appear once.
fn no_value(flag: &mut bool, value: Option<Value<'_>>) -> Result<(), Declined> {
    if *flag || value.is_some() {
        return Err(Declined);
    }
    *flag = true;
    Ok(())
}

/// A parameter value as written: a token, or the inside of a quoted string with its escapes.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Token(&'a [u8]),
    Quoted(&'a [u8]),
}

impl<'a> Value<'a> {
    /// The value's bytes once unescaped.
    fn bytes(self) -> impl Iterator<Item = u8> + Clone + 'a {
        let (raw, quoted) = match self {
            Self::Token(raw) => (raw, false),
            Self::Quoted(raw) => (raw, true),
        };
        let mut escaped = false;
        raw.iter().copied().filter(move |&b| {
            if quoted && !escaped && b == b'\\' {
                escaped = true;
                return false;
            }
            escaped = false;
            true
        })
    }

    /// A window size: a decimal integer 8..=15 without leading zeros (RFC 7692 §7.1.2).
    fn window_bits(self) -> Result<u8, Declined> {
        let mut digits = [0u8; 2];
        let mut len = 0;
        for (i, b) in self.bytes().enumerate() {
            if i == digits.len() || !b.is_ascii_digit() {
                return Err(Declined);
            }
            digits[i] = b - b'0';
            len = i + 1;
        }
        // One digit, or two starting with 1: no leading zero, nothing above 19.
        let bits = match digits[..len] {
            [units] => units,
            [1, units] => 10 + units,
            _ => return Err(Declined),
        };
        if (MIN_OFFERED_WINDOW_BITS..=MAX_WINDOW_BITS).contains(&bits) {
            Ok(bits)
        } else {
            Err(Declined)
        }
    }
}

/// A list element that breaks the RFC 6455 §9.1 grammar.
#[derive(Debug)]
struct Malformed;

/// A position in one header value.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn advance(&mut self, n: usize) {
        self.rest = &self.rest[n..];
    }

    /// Skips optional whitespace (RFC 9110 OWS: spaces and tabs).
    fn skip_whitespace(&mut self) {
        let n = self
            .rest
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        self.advance(n);
    }

    /// A token (RFC 9110 §5.6.2) at the cursor.
    fn token(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.rest.iter().take_while(|&&b| is_tchar(b)).count();
        if n == 0 {
            return Err(Malformed);
        }
        let token = &self.rest[..n];
        self.advance(n);
        Ok(token)
    }

    /// A token or a quoted string whose unescaped content is a token (RFC 6455 §9.1: "When
    /// using the quoted-string syntax variant, the value after quoted-string unescaping MUST
    /// conform to the 'token' ABNF").
    fn value(&mut self) -> Result<Value<'a>, Malformed> {
        if self.rest.first() != Some(&b'"') {
            return self.token().map(Value::Token);
        }
        let mut i = 1;
        loop {
            match self.rest.get(i) {
                None => return Err(Malformed),
                Some(b'"') => break,
                Some(b'\\') => i += 2,
                Some(_) => i += 1,
            }
        }
        let inside = self.rest.get(1..i).ok_or(Malformed)?;
        self.advance(i + 1);
        let value = Value::Quoted(inside);
        let mut bytes = value.bytes();
        let first = bytes.clone().next();
        if first.is_none() || !bytes.all(is_tchar) {
            return Err(Malformed);
        }
        Ok(value)
    }

    /// One list element, the cursor on its first byte; stops before the `,` that ends it.
    /// Returns the offer if the element is a permessage-deflate offer with valid parameters.
    fn element(&mut self) -> Result<Option<Offer>, Malformed> {
        let name = self.token()?;
        let mut offer = name
            .eq_ignore_ascii_case(PERMESSAGE_DEFLATE.as_bytes())
            .then(Offer::default);
        loop {
            self.skip_whitespace();
            match self.rest.first() {
                None | Some(b',') => return Ok(offer),
                Some(b';') => self.advance(1),
                Some(_) => return Err(Malformed),
            }
            self.skip_whitespace();
            let param = self.token()?;
            self.skip_whitespace();
            let value = if self.rest.first() == Some(&b'=') {
                self.advance(1);
                self.skip_whitespace();
                Some(self.value()?)
            } else {
                None
            };
            if let Some(valid) = &mut offer {
                if valid.apply(param, value).is_err() {
                    // Declined, but the rest of the element must still be read.
                    offer = None;
                }
            }
        }
    }

    /// Skips what is left of a malformed element, up to its `,` outside a quoted string.
    fn skip_element(&mut self) {
        let mut quoted = false;
        let mut i = 0;
        while let Some(&b) = self.rest.get(i) {
            match b {
                b'"' => quoted = !quoted,
                b'\\' if quoted => i += 1,
                b',' if !quoted => break,
                _ => {}
            }
            i += 1;
        }
        self.advance(i.min(self.rest.len()));
    }
}

/// A token character (RFC 9110 §5.6.2 `tchar`).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PLAIN: &str =
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    fn negotiate(lines: &[&str]) -> Option<DeflateParams> {
        negotiate_deflate(lines.iter().map(|line| line.as_bytes()))
    }

    /// An offer limited by `server_max_window_bits=bits`.
    fn window(bits: u8) -> Option<DeflateParams> {
        Some(DeflateParams {
            server_window_bits: bits,
            echo_server_max_window_bits: true,
        })
    }

    const DEFAULT: Option<DeflateParams> = Some(DeflateParams {
        server_window_bits: 15,
        echo_server_max_window_bits: false,
    });

    #[test]
    fn accepts_what_browsers_and_python_offer() {
        // Chromium, and Python websockets' default (client_max_window_bits=True).
        let chromium = negotiate(&["permessage-deflate; client_max_window_bits"]);
        assert_eq!(chromium, DEFAULT);
        assert_eq!(chromium.unwrap().response_value(), PLAIN);
        // Firefox.
        let firefox = negotiate(&["permessage-deflate"]);
        assert_eq!(firefox, DEFAULT);
        assert_eq!(firefox.unwrap().response_value(), PLAIN);
    }

    #[test]
    fn honours_a_server_window_and_echoes_it() {
        let params = negotiate(&["permessage-deflate; server_max_window_bits=10"]);
        assert_eq!(params, window(10));
        assert_eq!(
            params.unwrap().response_value(),
            format!("{PLAIN}; server_max_window_bits=10")
        );
        // 15 limits nothing, but an offer with the parameter must still see it answered.
        let params = negotiate(&["permessage-deflate; server_max_window_bits=15"]).unwrap();
        assert_eq!(params, window(15).unwrap());
        assert!(params
            .response_value()
            .ends_with("; server_max_window_bits=15"));
        assert_eq!(
            negotiate(&["permessage-deflate; server_max_window_bits=9"]),
            window(9)
        );
    }

    #[test]
    fn declines_an_8_bit_server_window_and_takes_the_next_offer() {
        assert_eq!(
            negotiate(&["permessage-deflate; server_max_window_bits=8"]),
            None
        );
        assert_eq!(
            negotiate(&["permessage-deflate; server_max_window_bits=8, permessage-deflate"]),
            DEFAULT
        );
        assert_eq!(
            negotiate(&[
                "permessage-deflate; server_max_window_bits=8",
                "permessage-deflate; server_max_window_bits=12",
            ]),
            window(12)
        );
        // A client window of 8 is fine: the decompressor has a 32 KiB window.
        assert_eq!(
            negotiate(&["permessage-deflate; client_max_window_bits=8"]),
            DEFAULT
        );
    }

    #[test]
    fn takes_the_first_acceptable_offer_in_the_clients_order() {
        // Autobahn 13.7-style: three offers, the first one usable wins.
        assert_eq!(
            negotiate(&[
                "permessage-deflate; server_max_window_bits=9; client_max_window_bits=9, \
                 permessage-deflate; client_max_window_bits, permessage-deflate"
            ]),
            window(9)
        );
        assert_eq!(
            negotiate(&["permessage-deflate, permessage-deflate; server_max_window_bits=9"]),
            DEFAULT
        );
    }

    #[test]
    fn reads_quoted_values_and_whitespace() {
        assert_eq!(
            negotiate(&[r#"permessage-deflate; server_max_window_bits="10""#]),
            window(10)
        );
        // A quoted-pair unescapes to its character.
        assert_eq!(
            negotiate(&[r#"permessage-deflate;server_max_window_bits="1\2""#]),
            window(12)
        );
        assert_eq!(
            negotiate(&[
                " \tpermessage-deflate \t; \tclient_max_window_bits \t= \t\"11\" ; \
                 server_max_window_bits = 13 \t, "
            ]),
            window(13)
        );
        assert_eq!(
            negotiate(&[
                "permessage-deflate;client_no_context_takeover;server_no_context_takeover"
            ]),
            DEFAULT
        );
        // A quoted value must still be a token once unescaped (RFC 6455 §9.1).
        assert_eq!(
            negotiate(&[r#"permessage-deflate; server_max_window_bits="1 2""#]),
            None
        );
        assert_eq!(
            negotiate(&[r#"permessage-deflate; server_max_window_bits="""#]),
            None
        );
    }

    #[test]
    fn declines_invalid_parameters() {
        for offer in [
            // Duplicates (§7.1).
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            // Unknown parameters.
            "permessage-deflate; mux",
            "permessage-deflate; client_max_window_bits; x-webkit=1",
            // A value where none is allowed.
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover=\"\"",
            // A missing value, and values out of range or not in canonical form.
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=09",
            "permessage-deflate; server_max_window_bits=+9",
            "permessage-deflate; server_max_window_bits=1e1",
            "permessage-deflate; client_max_window_bits=0",
            "permessage-deflate; client_max_window_bits=255",
            "permessage-deflate; client_max_window_bits=-15",
        ] {
            assert_eq!(negotiate(&[offer]), None, "{offer}");
            // Declining one offer leaves the next one to be taken.
            let two = format!("{offer}, permessage-deflate; server_max_window_bits=11");
            assert_eq!(negotiate(&[&two]), window(11), "{two}");
        }
    }

    #[test]
    fn survives_garbage_and_ignores_other_extensions() {
        for line in [
            "",
            " , ,, ",
            ";",
            "=",
            "permessage-deflate;",
            "permessage-deflate; =1",
            "permessage-deflate server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=10 11",
            "permessage-deflate/1",
            "perm\u{e9}ssage-deflate",
            "x-webkit-deflate-frame",
            "x-webkit-deflate-frame; max_window_bits=10",
            "permessage-deflate-x",
            "deflate-frame; no_context_takeover",
        ] {
            assert_eq!(negotiate(&[line]), None, "{line:?}");
            // A broken element only takes itself out: reading resumes after its comma.
            let two = format!("{line}, permessage-deflate");
            assert_eq!(negotiate(&[&two]), DEFAULT, "{two:?}");
        }
        // A quoted string that never closes takes the rest of the line with it.
        assert_eq!(
            negotiate(&["permessage-deflate; server_max_window_bits=\"10, permessage-deflate"]),
            None
        );
        // A comma inside a quoted string does not end the element.
        assert_eq!(negotiate(&[r#"foo; a="x,permessage-deflate", bar"#]), None);
        assert_eq!(
            negotiate(&[
                r#"foo; a="1\",permessage-deflate", permessage-deflate; server_max_window_bits=10"#
            ]),
            window(10)
        );
        assert_eq!(negotiate(&[]), None);
    }

    #[test]
    fn reads_every_header_line() {
        assert_eq!(
            negotiate(&[
                "x-webkit-deflate-frame",
                "foo, permessage-deflate; server_max_window_bits=14"
            ]),
            window(14)
        );
        assert_eq!(
            negotiate(&["permessage-deflate; mux", "", "permessage-deflate"]),
            DEFAULT
        );
    }

    #[test]
    fn matches_names_in_any_case() {
        assert_eq!(
            negotiate(&["PerMessage-Deflate; Server_Max_Window_Bits=10; CLIENT_MAX_WINDOW_BITS"]),
            window(10)
        );
        assert_eq!(
            negotiate(&["PERMESSAGE-DEFLATE"]).unwrap().response_value(),
            PLAIN
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..4),
        ) {
            if let Some(params) = negotiate_deflate(lines.iter().map(Vec::as_slice)) {
                prop_assert!((9..=15).contains(&params.server_window_bits));
                prop_assert!(params.response_value().starts_with(PLAIN));
            }
        }

        #[test]
        fn arbitrary_offers_of_known_pieces_never_panic(
            pieces in proptest::collection::vec(prop_oneof![
                Just("permessage-deflate"), Just(";"), Just(","), Just("="), Just("\""),
                Just(" "), Just("\\"), Just("server_max_window_bits"),
                Just("client_max_window_bits"), Just("server_no_context_takeover"),
                Just("8"), Just("10"), Just("15"),
            ], 0..24),
        ) {
            let line = pieces.concat();
            if let Some(params) = negotiate(&[&line]) {
                prop_assert!((9..=15).contains(&params.server_window_bits));
            }
        }
    }
}
