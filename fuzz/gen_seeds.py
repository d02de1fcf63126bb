#!/usr/bin/env python3
"""Writes the seed corpus under fuzz/corpus/. Deterministic; rerun after editing.

frame_decoder seeds: 2 bytes (little-endian u16, the split point modulo stream length + 1)
followed by the byte stream. handshake seeds: raw request bytes.
"""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = bytes([0x37, 0xFA, 0x21, 0x3D])  # RFC 6455 section 5.7

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def frame(opcode, payload, fin=True, key=KEY, rsv=0, length=None):
    """One frame; `key=None` for unmasked, `length` to lie about the payload length."""
    n = len(payload) if length is None else length
    out = bytearray([(0x80 if fin else 0) | rsv | opcode])
    mask_bit = 0x80 if key is not None else 0
    if n <= 125:
        out.append(mask_bit | n)
    elif n <= 0xFFFF:
        out.append(mask_bit | 126)
        out += struct.pack(">H", n)
    else:
        out.append(mask_bit | 127)
        out += struct.pack(">Q", n)
    if key is not None:
        out += key
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes(out) + payload


def close_payload(code, reason=b""):
    return struct.pack(">H", code) + reason


def seed(split, *frames):
    return struct.pack("<H", split) + b"".join(frames)


FRAME_SEEDS = {
    # RFC 6455 section 5.7 examples, masked and unmasked (the latter is valid for the client).
    "rfc_masked_hello": seed(3, bytes.fromhex("818537fa213d7f9f4d5158")),
    "rfc_unmasked_hello": seed(1, bytes.fromhex("810548656c6c6f")),
    "rfc_fragmented_unmasked": seed(6, bytes.fromhex("010348656c") + bytes.fromhex("80026c6f")),
    "rfc_ping_pong_unmasked": seed(
        7, bytes.fromhex("890548656c6c6f") + bytes.fromhex("8a0548656c6c6f")
    ),
    "rfc_masked_pong": seed(2, bytes.fromhex("8a8537fa213d7f9f4d5158")),
    "binary_256_16bit_len": seed(4, frame(BINARY, bytes(range(256)))),
    "binary_64bit_len_short_payload": seed(
        12, frame(BINARY, b"\x01" * 8, length=65536)[:14 + 8]
    ),
    # Masked fragmented text with a ping between the fragments; UTF-8 split across fragments.
    "fragmented_text_interleaved_ping": seed(
        9,
        frame(TEXT, b"Hel", fin=False),
        frame(PING, b"hi"),
        frame(CONT, b"lo w\xc3", fin=False),
        frame(CONT, b"\xb6rld \xe2\x82\xac"),
    ),
    "empty_frames_and_fragments": seed(
        5,
        frame(TEXT, b""),
        frame(BINARY, b"", fin=False),
        frame(CONT, b"", fin=False),
        frame(CONT, b""),
        frame(PING, b""),
    ),
    "several_messages": seed(
        40,
        frame(TEXT, "caf\u00e9 \U0001f30d".encode()),
        frame(BINARY, bytes(range(130))),
        frame(PONG, b"beat"),
        frame(TEXT, b"x" * 10),
    ),
    "close_with_reason_then_data": seed(
        8, frame(CLOSE, close_payload(1000, b"bye")), frame(TEXT, b"ignored")
    ),
    "close_empty": seed(0, frame(CLOSE, b"")),
    "close_one_byte_payload": seed(1, frame(CLOSE, b"\x03")),
    "close_reserved_code_1005": seed(2, frame(CLOSE, close_payload(1005))),
    "close_reason_bad_utf8": seed(3, frame(CLOSE, close_payload(1001, b"\xff\xfe"))),
    "bad_unmasked_client_frame": seed(2, frame(TEXT, b"Hello", key=None)),
    "bad_reserved_bits": seed(1, frame(TEXT, b"x", rsv=0x40)),
    "bad_reserved_opcode": seed(1, frame(0x3, b"x")),
    "bad_fragmented_ping": seed(1, frame(PING, b"x", fin=False)),
    "bad_control_too_long": seed(1, frame(PING, b"p" * 126)),
    "bad_64bit_len_msb": seed(
        3, bytes([0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0]) + KEY + b"\0\0"
    ),
    "bad_too_large_for_limit": seed(5, frame(BINARY, b"", length=65537)),
    "bad_continuation_first": seed(1, frame(CONT, b"x")),
    "bad_new_message_inside_fragmented": seed(
        7, frame(BINARY, b"a", fin=False), frame(TEXT, b"b")
    ),
    "bad_utf8_text": seed(4, frame(TEXT, b"ok \xc3\x28 no")),
    "bad_utf8_truncated_at_end": seed(
        6, frame(TEXT, b"abc\xe2\x82", fin=False), frame(CONT, b"")
    ),
}

BROWSER_REQUEST = (
    b"GET /ws?token=abc123 HTTP/1.1\r\n"
    b"Host: push.example.com\r\n"
    b"Connection: Upgrade\r\n"
    b"Pragma: no-cache\r\n"
    b"Cache-Control: no-cache\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/124.0.0.0 Safari/537.36\r\n"
    b"Upgrade: websocket\r\n"
    b"Origin: https://app.example.com\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\n"
    b"Accept-Language: en-US,en;q=0.9\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    b"\r\n"
)

RFC_REQUEST = (
    b"GET /chat HTTP/1.1\r\n"
    b"Host: server.example.com\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Origin: http://example.com\r\n"
    b"Sec-WebSocket-Protocol: chat, superchat\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)


def many_headers(count):
    lines = b"".join(b"X-H%d: v\r\n" % i for i in range(count))
    return RFC_REQUEST.replace(b"Origin:", lines + b"Origin:")


HANDSHAKE_SEEDS = {
    "rfc_request": RFC_REQUEST,
    "browser_request": BROWSER_REQUEST,
    "request_then_frame": RFC_REQUEST + frame(TEXT, b"Hello"),
    "token_lists_any_case": RFC_REQUEST.replace(
        b"Connection: Upgrade", b"connection: keep-alive, UPGRADE"
    ).replace(b"Upgrade: websocket", b"upgrade: WebSocket"),
    "partial_request": RFC_REQUEST[:57],
    "post_method": RFC_REQUEST.replace(b"GET", b"POST"),
    "http_1_0": RFC_REQUEST.replace(b"HTTP/1.1", b"HTTP/1.0"),
    "version_8": RFC_REQUEST.replace(b"Version: 13", b"Version: 8"),
    "missing_key": RFC_REQUEST.replace(b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", b""),
    "short_key": RFC_REQUEST.replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"c2hvcnQ="),
    "missing_host": RFC_REQUEST.replace(b"Host: server.example.com\r\n", b""),
    "no_colon_header": b"GET / HTTP/1.1\r\nHost x\r\n\r\n",
    "bare_lf_lines": RFC_REQUEST.replace(b"\r\n", b"\n"),
    "binary_header_value": RFC_REQUEST.replace(b"http://example.com", b"\xff\xfe\x80\x00"),
    "too_many_headers": many_headers(70),
    # Over the 2 KiB limit the target also parses with, under 4 KiB on disk.
    "oversized_header": b"GET / HTTP/1.1\r\nX-Fill: " + b"a" * 3000,
    "garbage": bytes(range(256))[::7],
}


def write(directory, seeds):
    path = os.path.join(HERE, "corpus", directory)
    os.makedirs(path, exist_ok=True)
    for name, data in seeds.items():
        assert len(data) < 4096, name
        with open(os.path.join(path, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    write("frame_decoder", FRAME_SEEDS)
    write("handshake", HANDSHAKE_SEEDS)
