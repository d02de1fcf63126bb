//! Replays the fuzz seed corpus (`fuzz/corpus/`) on stable, through the very drivers the fuzz
//! targets run (`fuzz/src/lib.rs`, compiled in here as a module), so a seed that once found a
//! bug keeps guarding against it without nightly or cargo-fuzz.

#[path = "../fuzz/src/lib.rs"]
mod drivers;

use std::fs;
use std::path::{Path, PathBuf};

/// Every file in `fuzz/corpus/<target>`, sorted, with its contents.
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<(PathBuf, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("readable corpus dir").path())
        .filter(|path| path.is_file())
        .map(|path| {
            let data = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, data)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no seeds", dir.display());
    files
}

/// Runs `check` on one seed, naming the seed if it panics.
fn replay(path: &Path, check: impl FnOnce() + std::panic::UnwindSafe) {
    if let Err(panic) = std::panic::catch_unwind(check) {
        eprintln!("seed {} failed", path.display());
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn frame_decoder_seeds_decode_the_same_at_every_split() {
    for (path, data) in corpus("frame_decoder") {
        replay(&path, || {
            // The split the seed itself asks for, as the fuzz target runs it...
            drivers::frame_decoder(&data);
            // ...and every other split point of its stream.
            if let [_, _, stream @ ..] = &data[..] {
                for split in 0..=stream.len() {
                    drivers::check_stream(stream, split);
                }
            }
        });
    }
}

#[test]
fn handshake_seeds_parse_without_panicking() {
    for (path, data) in corpus("handshake") {
        replay(&path, || {
            drivers::handshake(&data);
            // Every prefix too, as a request arriving in pieces is seen.
            for end in 0..data.len() {
                drivers::handshake(&data[..end]);
            }
        });
    }
}

#[test]
fn http_request_seeds_parse_the_same_at_every_split() {
    for (path, data) in corpus("http_request") {
        replay(&path, || {
            // The seed's own split, and byte at a time, as the fuzz target runs it...
            drivers::http_request(&data);
            // ...and every other split point.
            if let [_, _, stream @ ..] = &data[..] {
                for split in 0..=stream.len() {
                    drivers::check_http_split(stream, split);
                }
            }
        });
    }
}

#[test]
fn http_seeds_parse_as_their_names_say() {
    let stream = |name: &str| {
        let data = fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fuzz/corpus/http_request")
                .join(name),
        )
        .unwrap();
        data[2..].to_vec()
    };
    let (requests, error) = drivers::parse_http_pieces(&[&stream("pipelined_get_and_post")]);
    assert_eq!((requests.len(), error), (2, None));
    assert_eq!(requests[1].body, b"hi");
    let (requests, _) =
        drivers::parse_http_pieces(&[&stream("chunked_with_extension_and_trailer")]);
    assert_eq!(requests[0].body, b"abcde");
    let status = |name| {
        drivers::parse_http_pieces(&[&stream(name)])
            .1
            .map(|e| e.status)
    };
    assert_eq!(status("ambiguous_length_and_chunked"), Some(400));
    assert_eq!(status("body_over_limit"), Some(413));
    assert_eq!(status("head_too_large"), Some(431));
    assert_eq!(status("gzip_encoding"), Some(501));
}

#[test]
fn seeds_decode_as_their_names_say() {
    // A few spot checks that the seeds are what they claim, so the corpus cannot silently rot
    // into inputs the decoder rejects at the first byte.
    use drivers::{decode_pieces, Owned};
    use wspush::protocol::{ProtocolError, Role};

    let stream = |name: &str| {
        let data = fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fuzz/corpus/frame_decoder")
                .join(name),
        )
        .unwrap();
        data[2..].to_vec()
    };
    assert_eq!(
        decode_pieces(Role::Server, &[&stream("rfc_masked_hello")]),
        (vec![Owned::Text("Hello".into())], None)
    );
    assert_eq!(
        decode_pieces(Role::Client, &[&stream("rfc_fragmented_unmasked")]),
        (vec![Owned::Text("Hello".into())], None)
    );
    assert_eq!(
        decode_pieces(Role::Server, &[&stream("fragmented_text_interleaved_ping")]),
        (
            vec![
                Owned::Ping(b"hi".to_vec()),
                Owned::Text("Hello w\u{f6}rld \u{20ac}".into())
            ],
            None
        )
    );
    assert_eq!(
        decode_pieces(Role::Server, &[&stream("close_with_reason_then_data")]),
        (vec![Owned::Close(Some((1000, "bye".into())))], None)
    );
    assert_eq!(
        decode_pieces(Role::Server, &[&stream("bad_too_large_for_limit")]).1,
        Some(ProtocolError::MessageTooLarge)
    );
    assert_eq!(
        decode_pieces(Role::Server, &[&stream("bad_utf8_truncated_at_end")]).1,
        Some(ProtocolError::InvalidUtf8)
    );
}
