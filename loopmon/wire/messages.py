"""The control messages: hellos, errors, goodbyes, losses, commands and their replies.

Each is one frame; its body is the fields below in order (see docs/protocol.md). A hello opens
with the magic bytes ``LMON`` so that a stray client of another protocol is told apart from a
loopmon consumer that speaks another version.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Final

from loopmon.snapshot import ListenerRow, ProducerInfo
from loopmon.wire import frames, records
from loopmon.wire.codec import (
    Reader,
    WireError,
    put_bool,
    put_bytes,
    put_str,
    put_uvarint,
)
from loopmon.wire.frames import Frame, encode_frame

PROTOCOL_VERSION: Final = 1
SUPPORTED_VERSIONS: Final = (1,)
MAGIC: Final = b"LMON"
MAX_TOKEN: Final = 1024
MAX_VERSIONS: Final = 64

# Error kinds.
TOKEN: Final = "token"  # missing or wrong token
VERSION: Final = "version"  # a protocol version the producer does not speak
PROTOCOL: Final = "protocol"  # a frame out of place, or one that cannot be read
BUSY: Final = "busy"  # too many consumers
TIMEOUT: Final = "timeout"  # no hello in time
SLOW: Final = "slow"  # did not read for too long

# Command names, as a producer's hello lists those it takes.
START_LISTENER: Final = "start_listener"
STOP_LISTENER: Final = "stop_listener"
CLOSE_CONNECTION: Final = "close_connection"
SET_STRATEGY: Final = "set_strategy"
COMMANDS: Final = (START_LISTENER, STOP_LISTENER, CLOSE_CONNECTION, SET_STRATEGY)


@dataclass(frozen=True, slots=True)
class ConsumerHello:
    token: bytes
    version: int = PROTOCOL_VERSION
    client: str = ""  # what the consumer is, for the producer's log: "loopmon attach"


@dataclass(frozen=True, slots=True)
class ProducerHello:
    info: ProducerInfo
    version: int = PROTOCOL_VERSION


@dataclass(frozen=True, slots=True)
class ErrorMessage:
    """The producer's last word before it closes: why, in a line for the user."""

    kind: str
    message: str
    supported: tuple[int, ...] = SUPPORTED_VERSIONS


@dataclass(frozen=True, slots=True)
class Goodbye:
    """Either side closes on purpose (a producer stopping, a consumer leaving)."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class Lost:
    """Frames the consumer did not get because it read too slowly; a keyframe follows."""

    frames: int  # dropped since the last snapshot frame it got
    total: int  # dropped over the whole connection


# The calls a command carries.
@dataclass(frozen=True, slots=True)
class StartListener:
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class StopListener:
    listener_id: int
    close_connections: bool = False


@dataclass(frozen=True, slots=True)
class CloseConnection:
    connection_id: int


@dataclass(frozen=True, slots=True)
class SetStrategy:
    name: str


Call = StartListener | StopListener | CloseConnection | SetStrategy
CALL_NAMES: Final[dict[type, str]] = {
    StartListener: START_LISTENER,
    StopListener: STOP_LISTENER,
    CloseConnection: CLOSE_CONNECTION,
    SetStrategy: SET_STRATEGY,
}


@dataclass(frozen=True, slots=True)
class Command:
    request_id: int
    call: Call


@dataclass(frozen=True, slots=True)
class Reply:
    """A command's outcome: ``result`` (a started listener's row, else None) or, when
    ``error_kind`` is set, a failure (``error_kind`` is the exception's type name:
    "ListenerError", "KeyError", "ValueError" ...; ``error`` its text)."""

    request_id: int
    result: ListenerRow | None = None
    error_kind: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error_kind


Message = ConsumerHello | ProducerHello | ErrorMessage | Goodbye | Lost | Command | Reply


def _put_call(out: bytearray, call: Call) -> None:
    put_str(out, CALL_NAMES[type(call)])
    if isinstance(call, StartListener):
        put_str(out, call.host)
        put_uvarint(out, call.port)
    elif isinstance(call, StopListener):
        put_uvarint(out, call.listener_id)
        put_bool(out, call.close_connections)
    elif isinstance(call, CloseConnection):
        put_uvarint(out, call.connection_id)
    else:
        put_str(out, call.name)


def _get_call(r: Reader) -> Call:
    name = r.text()
    if name == START_LISTENER:
        return StartListener(r.text(), r.uvarint())
    if name == STOP_LISTENER:
        return StopListener(r.uvarint(), r.bool())
    if name == CLOSE_CONNECTION:
        return CloseConnection(r.uvarint())
    if name == SET_STRATEGY:
        return SetStrategy(r.text())
    raise WireError(f"an unknown command {name!r}")


def encode_message(msg: Message) -> bytes:
    """The frame of one control message."""
    out = bytearray()
    try:
        if isinstance(msg, ConsumerHello):
            out += MAGIC
            put_uvarint(out, msg.version)
            put_bytes(out, msg.token)
            put_str(out, msg.client)
            return encode_frame(frames.CONSUMER_HELLO, out, frames.TO_PRODUCER_MAX)
        if isinstance(msg, ProducerHello):
            out += MAGIC
            put_uvarint(out, msg.version)
            records.put_producer(out, msg.info)
            return encode_frame(frames.PRODUCER_HELLO, out)
        if isinstance(msg, ErrorMessage):
            put_str(out, msg.kind)
            put_str(out, msg.message)
            put_uvarint(out, len(msg.supported))
            for v in msg.supported:
                put_uvarint(out, v)
            return encode_frame(frames.ERROR, out)
        if isinstance(msg, Goodbye):
            put_str(out, msg.reason)
            return encode_frame(frames.GOODBYE, out, frames.TO_PRODUCER_MAX)
        if isinstance(msg, Lost):
            put_uvarint(out, msg.frames)
            put_uvarint(out, msg.total)
            return encode_frame(frames.LOST, out)
        if isinstance(msg, Command):
            put_uvarint(out, msg.request_id)
            _put_call(out, msg.call)
            return encode_frame(frames.COMMAND, out, frames.TO_PRODUCER_MAX)
        if isinstance(msg, Reply):
            put_uvarint(out, msg.request_id)
            if msg.error_kind:
                out.append(2)
                put_str(out, msg.error_kind)
                put_str(out, msg.error)
            elif msg.result is None:
                out.append(0)
            else:
                out.append(1)
                records.put_listener(out, msg.result)
            return encode_frame(frames.REPLY, out)
    except (TypeError, ValueError, OverflowError, AttributeError, KeyError) as exc:
        raise WireError(f"cannot encode {type(msg).__name__}: {exc}") from None
    raise WireError(f"not a message: {type(msg).__name__}")


def _magic(r: Reader) -> None:
    if r.remaining < len(MAGIC) or r.take(len(MAGIC)) != MAGIC:
        raise WireError("a hello without the LMON magic: not a loopmon telemetry peer")


def decode_message(frame: Frame) -> Message:
    """The control message in ``frame``; ``WireError`` if it is not one or cannot be read."""
    r = Reader(frame.body)
    kind = frame.type
    try:
        msg: Message
        if kind == frames.CONSUMER_HELLO:
            _magic(r)
            version = r.uvarint()
            if version != PROTOCOL_VERSION:
                # Another version's hello may be laid out otherwise: read no further.
                return ConsumerHello(b"", version, "")
            token_len = r.count(MAX_TOKEN, "token bytes")
            msg = ConsumerHello(r.take(token_len), version, r.text())
        elif kind == frames.PRODUCER_HELLO:
            _magic(r)
            version = r.uvarint()
            if version != PROTOCOL_VERSION:
                raise WireError(
                    f"the producer speaks protocol version {version}; this loopmon speaks "
                    f"{PROTOCOL_VERSION}"
                )
            msg = ProducerHello(records.get_producer(r), version)
        elif kind == frames.ERROR:
            error_kind = r.text()
            message = r.text()
            n = r.count(MAX_VERSIONS, "versions")
            msg = ErrorMessage(error_kind, message, tuple(r.uvarint() for _ in range(n)))
        elif kind == frames.GOODBYE:
            msg = Goodbye(r.text())
        elif kind == frames.LOST:
            msg = Lost(r.uvarint(), r.uvarint())
        elif kind == frames.COMMAND:
            msg = Command(r.uvarint(), _get_call(r))
        elif kind == frames.REPLY:
            request_id = r.uvarint()
            outcome = r.u8()
            if outcome == 0:
                msg = Reply(request_id)
            elif outcome == 1:
                msg = Reply(request_id, records.get_listener(r))
            elif outcome == 2:
                error_kind = r.text()
                if not error_kind:
                    raise WireError("a failed reply without an error kind")
                msg = Reply(request_id, None, error_kind, r.text())
            else:
                raise WireError(f"a reply of unknown outcome {outcome}")
        else:
            raise WireError(f"a frame of type 0x{kind:02x} is not a control message")
        r.done()
        return msg
    except WireError:
        raise
    except (ValueError, TypeError, OverflowError, IndexError, KeyError, MemoryError) as exc:
        raise WireError(f"a malformed message: {type(exc).__name__}: {exc}") from None


def check_consumer_hello(hello: Message, token: bytes) -> ErrorMessage | None:
    """None when ``hello`` may go on; else the error to send before closing."""
    if not isinstance(hello, ConsumerHello):
        return ErrorMessage(PROTOCOL, "the first frame must be a consumer hello")
    if hello.version not in SUPPORTED_VERSIONS:
        newer = hello.version > max(SUPPORTED_VERSIONS)
        return ErrorMessage(
            VERSION,
            f"protocol version {hello.version} is {'newer than' if newer else 'not among'} "
            f"what this producer speaks ({', '.join(map(str, SUPPORTED_VERSIONS))})",
        )
    # compare_digest takes time independent of where the bytes differ; a missing token is
    # compared too, so the reply time says nothing about its length either.
    if not hello.token or not hmac.compare_digest(hello.token, token):
        what = "no token" if not hello.token else "a wrong token"
        return ErrorMessage(TOKEN, f"{what}: this telemetry port needs the token of the run")
    return None
