//! Payload masking (RFC 6455 §5.3).
//!
//! Owns the XOR transform every client-to-server payload goes through. It is pure and streaming:
//! a payload that arrives in pieces is unmasked piece by piece by passing each piece's offset
//! within the payload. It never allocates.

/// XORs `buf` with `key`, as if `buf` started `offset` bytes into the masked payload.
///
/// Masking is its own inverse, so the same call masks and unmasks.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let key = rotate_key(key, offset);
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i & 3];
    }
}

/// The byte-at-a-time definition of masking from the RFC; the reference `apply_mask` must match.
pub fn apply_mask_naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[(offset + i) % 4];
    }
}

fn rotate_key(key: [u8; 4], offset: usize) -> [u8; 4] {
    let shift = offset % 4;
    [
        key[shift],
        key[(shift + 1) % 4],
        key[(shift + 2) % 4],
        key[(shift + 3) % 4],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn unmasks_rfc_hello_example() {
        // RFC 6455 §5.7: a masked "Hello" with key 37 fa 21 3d.
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&payload, b"Hello");
    }

    proptest! {
        #[test]
        fn fast_mask_equals_naive_mask(
            data in proptest::collection::vec(any::<u8>(), 0..200),
            key in any::<[u8; 4]>(),
            offset in 0usize..16,
        ) {
            let mut fast = data.clone();
            let mut naive = data;
            apply_mask(&mut fast, key, offset);
            apply_mask_naive(&mut naive, key, offset);
            prop_assert_eq!(fast, naive);
        }

        #[test]
        fn masking_in_pieces_equals_masking_at_once(
            data in proptest::collection::vec(any::<u8>(), 0..200),
            key in any::<[u8; 4]>(),
            split in 0usize..200,
        ) {
            let split = split.min(data.len());
            let mut whole = data.clone();
            apply_mask(&mut whole, key, 0);
            let mut pieces = data;
            let (head, tail) = pieces.split_at_mut(split);
            apply_mask(head, key, 0);
            apply_mask(tail, key, split);
            prop_assert_eq!(whole, pieces);
        }
    }
}
