"""The load generator behind ``loopmon load`` (layer 3, no argparse: the command is
``loopmon.cli.load``): ``patterns`` holds the byte streams every connection sends and checks,
``generator`` the connections on a loop.
Every connection sends a deterministic pseudo-random byte stream: a window into one shared
pattern (``PATTERN_SIZE`` bytes from a seeded generator), starting at an offset fixed by the
connection's index, so two connections never expect the same bytes at the same position and an
echo crossed between connections is caught. Every byte that comes back is compared with the byte
sent at that position (a slice of the pattern, so checking is linear); a chunk that differs, or
bytes beyond what was sent, count as mismatches and are never hidden.

Modes:
- ``rr``: request and response: one ``--size`` message in flight per client;
- ``flood``: pipelined, up to ``--inflight`` bytes sent but not yet echoed per client;
- ``slow``: sends as fast as the kernel takes, reads only ``--read-rate`` bytes/s per client,
  so the server's queues fill and its backpressure shows;
- ``idle``: opens the connections and holds them (any byte or EOF from the server is counted);
- ``churn``: connect, one message, check its echo, close; again.

A round trip is one ``--size`` message fully echoed; its latency runs from sending its first
byte (in churn, from starting to connect) to receiving its last. Connections that fail are
counted and replaced after a short pause. The run stops by itself after ``--duration``; SIGINT
and SIGTERM stop it early, and the summary is printed either way.
"""
