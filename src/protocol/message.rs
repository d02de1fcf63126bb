//! The message types shared by the decoder, the handler callbacks and the send path.

/// A complete WebSocket data message, borrowed from the read buffer or the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message; always valid UTF-8.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl<'a> Message<'a> {
    /// The payload bytes, whatever the message type.
    pub fn as_bytes(&self) -> &'a [u8] {
        match *self {
            Self::Text(text) => text.as_bytes(),
            Self::Binary(bytes) => bytes,
        }
    }

    /// True for text messages.
    pub fn is_text(&self) -> bool {
        matches!(self, Self::Text(_))
    }
}

impl<'a> From<&'a str> for Message<'a> {
    fn from(text: &'a str) -> Self {
        Self::Text(text)
    }
}

impl<'a> From<&'a [u8]> for Message<'a> {
    fn from(bytes: &'a [u8]) -> Self {
        Self::Binary(bytes)
    }
}
