"""The benchmark behind ``loopmon bench``: loopmon's echo server side by side with what a user
would pick instead (the command, its options and output, is ``loopmon.cli.bench``).

Every server runs in its own process, pinned to one core, and every load is the same
``loopmon load`` client (a subprocess, on the other core), so the servers differ and nothing
else does. The rounds are interleaved (A B C, A B C, ...) and every ratio is the median of
per-round paired ratios against asyncio's Protocol server, so drift of the machine during the
run cancels out.

A Python client can run out of CPU before a fast server does; then round trips per second say
more about the client than the server. So each round also reports which side was saturated
(CPU time over a window inside the round, from ``/proc/PID/task/*/schedstat``) and the
server's own CPU time per round trip: the figure that stays true when the client is the limit.
It covers the whole round, connection set-up and tear-down included.

Workloads (``--workloads``):

- ``rr-1k``: 100 connections x 1 KiB request/response (one message in flight each);
- ``rr-64k``: 10 x 64 KiB;
- ``rr-128``: 1,000 x 128 B;
- ``idle-10k``: 10,000 idle connections: the server's RSS holding them and the connect rate
  (a fresh server each round, counted from its open descriptors). The client opens all of
  them at once: a server that accepts more slowly than that burst overflows its backlog
  (1,024) and the rest arrive on the kernel's SYN-ACK retries (1, 2, 4, 8 s apart), so
  connect/s falls from tens of thousands to a few thousand: it measures burst absorption.
  With a loopmon server in the run, also what a telemetry snapshot of that many idle
  connections costs the loop thread (``probes.measure_snapshot``: built in-process, the clients
  in a child, since one process cannot hold both ends of 10,000 connections here);
- ``wake``: in one process, from another thread, ``IOLoop.add_callback(cb)`` to the start of
  ``cb`` against asyncio's (and uvloop's) ``call_soon_threadsafe``, the loop idle in its poll
  before every sample.

Speed is reported here, never asserted by a test.

One module per job: ``specs`` (workloads and servers), ``planning`` (options to settings),
``session`` (a whole run), ``rounds`` (one round of each workload), ``processes`` (children
seen from the parent), ``procfs``, ``stats``, ``report``, ``progress``; and what runs in the
children: ``peers`` (the servers loopmon is measured against) and ``probes`` (wake, snapshot),
started through one entry point, ``python -m loopmon.bench.children`` (see there).
"""
