//! Incremental UTF-8 validation for text messages that arrive in pieces.
//!
//! A text message may be split across frames and each frame across reads, with a code point cut
//! anywhere. `Utf8Validator` carries the few bits of state needed between pieces and reports the
//! first invalid byte as soon as it is seen (RFC 6455 §8.1: fail fast), not when the message ends.
//! It never allocates; its state is three bytes.

/// The input is not valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

/// Validates UTF-8 fed in arbitrary pieces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf8Validator {
    /// Continuation bytes still expected for the current code point.
    pending: u8,
    /// Inclusive range the next continuation byte must fall in.
    lower: u8,
    upper: u8,
}

impl Default for Utf8Validator {
    fn default() -> Self {
        Self::new()
    }
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub const fn new() -> Self {
        Self {
            pending: 0,
            lower: 0x80,
            upper: 0xBF,
        }
    }

    /// Validates the next piece of input; fails at the first byte that cannot start or continue a
    /// valid sequence.
    pub fn feed(&mut self, mut input: &[u8]) -> Result<(), InvalidUtf8> {
        while self.pending > 0 {
            let Some((&byte, rest)) = input.split_first() else {
                return Ok(());
            };
            self.continue_sequence(byte)?;
            input = rest;
        }
        match std::str::from_utf8(input) {
            Ok(_) => Ok(()),
            // A cut code point at the end: only its valid prefix is present.
            Err(error) if error.error_len().is_none() => {
                for &byte in &input[error.valid_up_to()..] {
                    self.step(byte)?;
                }
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// True when the input so far ends on a code point boundary.
    pub fn is_complete(&self) -> bool {
        self.pending == 0
    }

    fn step(&mut self, byte: u8) -> Result<(), InvalidUtf8> {
        if self.pending > 0 {
            return self.continue_sequence(byte);
        }
        // Unicode Table 3-7, well-formed UTF-8 byte sequences.
        let (pending, lower, upper) = match byte {
            0x00..=0x7F => return Ok(()),
            0xC2..=0xDF => (1, 0x80, 0xBF),
            0xE0 => (2, 0xA0, 0xBF),
            0xE1..=0xEC | 0xEE..=0xEF => (2, 0x80, 0xBF),
            0xED => (2, 0x80, 0x9F),
            0xF0 => (3, 0x90, 0xBF),
            0xF1..=0xF3 => (3, 0x80, 0xBF),
            0xF4 => (3, 0x80, 0x8F),
            _ => return Err(InvalidUtf8),
        };
        *self = Self {
            pending,
            lower,
            upper,
        };
        Ok(())
    }

    fn continue_sequence(&mut self, byte: u8) -> Result<(), InvalidUtf8> {
        if byte < self.lower || byte > self.upper {
            return Err(InvalidUtf8);
        }
        self.pending -= 1;
        self.lower = 0x80;
        self.upper = 0xBF;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn validate_in_pieces(bytes: &[u8], cuts: &[usize]) -> bool {
        let mut validator = Utf8Validator::new();
        let mut start = 0;
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        for cut in cuts.into_iter().chain([bytes.len()]) {
            if validator.feed(&bytes[start..cut]).is_err() {
                return false;
            }
            start = cut;
        }
        validator.is_complete()
    }

    #[test]
    fn accepts_a_code_point_cut_between_pieces() {
        let euro = "€".as_bytes();
        let mut validator = Utf8Validator::new();
        validator.feed(&euro[..1]).unwrap();
        assert!(!validator.is_complete());
        validator.feed(&euro[1..]).unwrap();
        assert!(validator.is_complete());
    }

    #[test]
    fn fails_at_the_first_invalid_byte_before_the_message_ends() {
        let mut validator = Utf8Validator::new();
        validator.feed(&[0xCE, 0xBA, 0xE1]).unwrap();
        assert_eq!(validator.feed(&[0x80, 0xC0]), Err(InvalidUtf8));
    }

    #[test]
    fn rejects_surrogates_and_out_of_range_code_points() {
        for bad in [
            &[0xED, 0xA0, 0x80][..],
            &[0xF4, 0x90, 0x80, 0x80],
            &[0xC0, 0x80],
        ] {
            assert!(Utf8Validator::new().feed(bad).is_err(), "{bad:x?}");
        }
    }

    proptest! {
        #[test]
        fn agrees_with_std_for_any_split(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            cuts in proptest::collection::vec(any::<usize>(), 0..4),
        ) {
            prop_assert_eq!(validate_in_pieces(&bytes, &cuts), std::str::from_utf8(&bytes).is_ok());
        }

        #[test]
        fn accepts_any_valid_string_split_anywhere(
            text in "\\PC*",
            cuts in proptest::collection::vec(any::<usize>(), 0..4),
        ) {
            prop_assert!(validate_in_pieces(text.as_bytes(), &cuts));
        }
    }
}
