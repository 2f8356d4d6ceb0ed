"""Singer messages to stdout, fast: msgspec encoding and one flush per STATE, not per record.

The SDK writers flush stdout after every message, i.e. one write syscall per record. Here
RECORD lines stay in the stdout buffer until the next non-RECORD message (STATE, SCHEMA...),
which is flushed at once. Order is unchanged, so a target never sees a STATE before the
records it covers; if the process dies, what is lost was never checkpointed.
"""

from __future__ import annotations

import sys

from singer_sdk.singerlib.encoding import SingerMessageType
from singer_sdk.singerlib.encoding.simple import Message

try:  # singer-sdk[msgspec]
    from singer_sdk.contrib.msgspec import MsgSpecWriter as _EncodingWriter

    MSGSPEC = True
except ImportError:  # pragma: no cover - depends on the installed extra
    from singer_sdk.singerlib.encoding import SimpleSingerWriter as _EncodingWriter

    MSGSPEC = False


class BufferedSingerWriter(_EncodingWriter):  # type: ignore[misc,valid-type]
    def write_message(self, message: Message) -> None:
        line = self.format_message(message)
        out = sys.stdout  # looked up per call: tests and runners redirect it
        if isinstance(line, str):
            out.write(line + "\n")
        else:  # msgspec: bytes, newline included, in a buffer it reuses -> write it now
            out.buffer.write(line)
        if message.type != SingerMessageType.RECORD:
            out.flush()
