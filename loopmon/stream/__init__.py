"""What carries measurements out of a process: the telemetry publisher and its client.

``publisher`` streams a producer's snapshots to consumers from the producer's own loop (no
thread), through the small ``reactor`` protocol (adapters for loopmon's IOLoop and for
asyncio); ``client`` consumes such a stream on a thread of its own, into a callback or a
Mailbox, with commands as futures; ``tokens`` keeps the run's token in a private file. The
protocol itself is ``loopmon.wire`` (docs/protocol.md).
"""
