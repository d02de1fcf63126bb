"""An independent permessage-deflate client for tests/deflate_peers.rs: Python `websockets`
(installed by .ci/run into target/pyenv). Each scenario prints one JSON line with what it saw.

usage: deflate_client.py SCENARIO URL [server_max_window_bits]
  negotiate   connect and report the extension the server accepted
  roundtrip   log in as "py", send messages to itself (small and large, text and binary, and a
              2 KiB random block repeated, which only a compressor that respects the window can
              encode for a client with a small window) and report whether all came back intact
  bomb        log in, send 64 MiB of zeros (about 64 KiB compressed) and report how the server
              closed
"""
import json
import os
import sys

from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.sync.client import connect

WAIT = 10


def open_client(url, window_bits):
    factory = ClientPerMessageDeflateFactory(
        server_max_window_bits=window_bits,
        client_max_window_bits=True,
    )
    return connect(url, extensions=[factory], compression=None, open_timeout=WAIT,
                   close_timeout=WAIT, max_size=None)


def login(ws, uid):
    ws.send(uid)
    answer = ws.recv(timeout=WAIT)
    assert answer == f"login success, your uid is {uid}", answer


def main():
    scenario, url = sys.argv[1], sys.argv[2]
    window_bits = int(sys.argv[3]) if len(sys.argv) > 3 else None
    with open_client(url, window_bits) as ws:
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
        if scenario == "negotiate":
            print(json.dumps({"extensions": extensions}))
            return
        login(ws, "py")
        if scenario == "roundtrip":
            block = os.urandom(1024).hex()
            texts = ["small", "x" * 600, json.dumps({"items": list(range(2000))}), block + block]
            for text in texts:
                ws.send("py:" + text)
                got = ws.recv(timeout=WAIT)
                if got != text:
                    print(json.dumps({"ok": False, "sent": len(text), "got": len(got)}))
                    return
            print(json.dumps({"ok": True, "extensions": extensions, "messages": len(texts)}))
        elif scenario == "bomb":
            try:
                ws.send("py:" + "\0" * (64 << 20))
                ws.recv(timeout=WAIT)
                print(json.dumps({"code": None}))
            except ConnectionClosed as closed:
                print(json.dumps({"code": closed.rcvd.code if closed.rcvd else None,
                                  "reason": closed.rcvd.reason if closed.rcvd else None}))


main()
