"""A consumer that costs next to nothing: bench_stream's ``--consumer null``.

    python benchmarks/stream_sink.py HOST:PORT

It says hello with the local producer's token, then reads the stream and decodes nothing,
printing one line for each snapshot frame (keyframe or delta) it receives, so the benchmark
counts the delivered rate as it does with ``attach --json``. What serve pays for it is the
producer side alone (building, encoding, sending): set beside ``--consumer json`` it tells
the producer's cost from what a consumer's own CPU does to a client pinned beside it.
"""

from __future__ import annotations

import socket
import sys

from loopmon.stream import tokens
from loopmon.wire import messages as msgs
from loopmon.wire.frames import DELTA, HEADER, HEADER_SIZE, KEYFRAME


def main() -> int:
    host, _, port_text = sys.argv[1].rpartition(":")
    host = host.strip("[]")
    port = int(port_text)
    token = tokens.consumer_token(port, None, True)
    sock = socket.create_connection((host, port))
    sock.sendall(msgs.encode_message(msgs.ConsumerHello(token, client="stream_sink")))
    buf = bytearray()
    out = sys.stdout
    while True:
        data = sock.recv(1 << 20)
        if not data:
            return 0
        buf += data
        pos = 0
        while len(buf) - pos >= HEADER_SIZE:
            length, kind = HEADER.unpack_from(buf, pos)
            if len(buf) - pos < 4 + length:
                break
            if kind in (KEYFRAME, DELTA):
                out.write("f\n")
            pos += 4 + length
        del buf[:pos]
        out.flush()


if __name__ == "__main__":
    sys.exit(main())
