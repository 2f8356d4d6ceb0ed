"""Singer messages to stdout, fast: msgspec encoding and one write per 64 KiB, not per record.

The SDK writers flush stdout after every message, i.e. one write syscall per record, and so
does Python itself when PYTHONUNBUFFERED is set (as in many containers and CI runners). Here
RECORD lines collect in the writer's own buffer until it holds 64 KiB or a non-RECORD message
(STATE, SCHEMA...) comes, which is written at once with everything before it. Order is
unchanged, so a target never sees a STATE before the records it covers; what is still buffered
at exit is written then.
"""

from __future__ import annotations

import atexit
import sys
from datetime import datetime
from typing import Any

from singer_sdk import singerlib as singer
from singer_sdk.singerlib.encoding import SingerMessageType
from singer_sdk.singerlib.encoding.simple import Message

try:  # singer-sdk[msgspec]
    from singer_sdk.contrib.msgspec import MsgSpecWriter as _EncodingWriter
    from singer_sdk.contrib.msgspec import encoder as _encoder

    MSGSPEC = True
except ImportError:  # pragma: no cover - depends on the installed extra
    from singer_sdk.singerlib.encoding import SimpleSingerWriter as _EncodingWriter

    MSGSPEC = False


class BufferedSingerWriter(_EncodingWriter):  # type: ignore[misc,valid-type]
    FLUSH_BYTES = 1 << 16

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending = bytearray()
        atexit.register(self.flush)

    def write_message(self, message: Message) -> None:
        line = self.format_message(message)
        # msgspec hands bytes (newline included) in a buffer it reuses: copied here at once.
        self._pending += (line + "\n").encode() if isinstance(line, str) else line
        if message.type != SingerMessageType.RECORD or len(self._pending) >= self.FLUSH_BYTES:
            self.flush()

    def write_record(self, stream: str, record: dict[str, Any], version: int | None,
                     time_extracted: datetime) -> None:
        """A RECORD message, encoded straight from its fields: the same line the SDK writes,
        without building and converting a RecordMessage per record. `time_extracted` must be
        aware UTC (the caller stamps it once per page)."""
        if not MSGSPEC:  # pragma: no cover - depends on the installed extra
            self.write_message(singer.RecordMessage(stream=stream, record=record,
                                                    version=version,
                                                    time_extracted=time_extracted))
            return
        message: dict[str, Any] = {"type": "RECORD", "stream": stream, "record": record}
        if version is not None:
            message["version"] = version
        message["time_extracted"] = time_extracted
        # The SDK's own encoder, appending straight to the buffer (offset -1): no copy.
        _encoder.encode_into(message, self._pending, -1)
        self._pending += b"\n"
        if len(self._pending) >= self.FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        out = sys.stdout  # looked up per call: tests and runners redirect it
        if self._pending:
            data, self._pending = bytes(self._pending), bytearray()
            binary = getattr(out, "buffer", None)
            if binary is None:  # a text-only stream (a test's StringIO)
                out.write(data.decode("utf-8"))
            else:
                out.flush()  # anything written to the text layer goes first
                binary.write(data)
        out.flush()
