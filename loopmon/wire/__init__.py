"""The telemetry protocol (layer 1): frames, control messages and the snapshot codec.

``frames`` cuts a byte stream into length-prefixed frames; ``messages`` codes the hellos,
errors, commands and replies; ``snapshots`` turns a sequence of snapshots into a keyframe and
deltas and back (``rows`` and ``columns`` code connection rows column by column, ``records``
the small records, ``closes`` the closed connections' section, which a consumer that lost
frames gets rewritten). ``recording`` writes the frames to a file and ``playback`` reads them
back (``recformat``: the file's layout, docs/recording.md). The standard library only (struct,
array, varints): no pickle, no marshal. docs/protocol.md is the specification a third party
writes a client from.
"""

from loopmon.wire.codec import WireError
from loopmon.wire.frames import (
    TO_CONSUMER_MAX,
    TO_PRODUCER_MAX,
    Frame,
    FrameReader,
)
from loopmon.wire.messages import (
    PROTOCOL_VERSION,
    SUPPORTED_VERSIONS,
    Call,
    CloseConnection,
    Command,
    ConsumerHello,
    ErrorMessage,
    Goodbye,
    Lost,
    Message,
    ProducerHello,
    Reply,
    SetStrategy,
    StartListener,
    StopListener,
    check_consumer_hello,
    decode_message,
    encode_message,
)
from loopmon.wire.snapshots import Encoded, SnapshotDecoder, SnapshotEncoder, encode_keyframe

__all__ = [
    "PROTOCOL_VERSION",
    "SUPPORTED_VERSIONS",
    "TO_CONSUMER_MAX",
    "TO_PRODUCER_MAX",
    "Call",
    "CloseConnection",
    "Command",
    "ConsumerHello",
    "Encoded",
    "ErrorMessage",
    "Frame",
    "FrameReader",
    "Goodbye",
    "Lost",
    "Message",
    "ProducerHello",
    "Reply",
    "SetStrategy",
    "SnapshotDecoder",
    "SnapshotEncoder",
    "StartListener",
    "StopListener",
    "WireError",
    "check_consumer_hello",
    "decode_message",
    "encode_keyframe",
    "encode_message",
]
