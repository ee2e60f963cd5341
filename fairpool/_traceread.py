"""Reading trace files safely, whatever they hold: the event stream behind ``fairpool report``.

* Only regular files are read: a FIFO, a device (``/dev/zero``), a socket
  is refused before a byte is read (opened with ``O_NONBLOCK``, checked
  with ``fstat``).
* A file over :data:`MAX_FILE_BYTES`, an event over :data:`MAX_EVENT_BYTES`,
  and an event nested deeper than :data:`MAX_DEPTH` are refused.
* The JSON is parsed event by event (``json.JSONDecoder.raw_decode`` over
  chunks), so memory stays at about one chunk plus one event, whatever the
  file's size. Both forms are read: the JSON Array form (fairpool's; its
  closing bracket may be missing, and its last event cut off, after a
  crash) and the JSON Object form (``{"traceEvents": [...]}``).

Every problem is a :class:`ReportError` with one line naming the file.
"""

from __future__ import annotations

import codecs
import json
import stat
from collections.abc import Iterator
from typing import Any

from ._native import os
from ._tracefile import file_kind
from .errors import FairpoolError

__all__ = ["MAX_DEPTH", "MAX_EVENT_BYTES", "MAX_FILE_BYTES", "ReportError", "TraceReader"]

#: The largest trace file read (bytes).
MAX_FILE_BYTES = 4 * 1024**3
#: The largest single event (characters).
MAX_EVENT_BYTES = 8 * 1024**2
#: The deepest nesting of objects and lists inside one event.
MAX_DEPTH = 32
#: Bytes read at a time.
CHUNK_BYTES = 256 * 1024


class ReportError(FairpoolError):
    """A trace file is missing, not a regular file, too large, or not trace-event JSON."""


def _depth(value: Any, limit: int) -> bool:
    """Whether ``value`` nests no deeper than ``limit``."""
    todo = [(value, 1)]
    while todo:
        v, d = todo.pop()
        if isinstance(v, dict):
            if d > limit:
                return False
            todo.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            if d > limit:
                return False
            todo.extend((x, d + 1) for x in v)
    return True


_WS = " \t\n\r"


class TraceReader:
    """The events of one trace file, one at a time. See the module docstring.

    After iterating, ``truncated`` says whether the file ended inside an
    event or without its closing bracket (a process killed while recording).
    """

    def __init__(self, path: str, label: str) -> None:
        """``label`` names the file in errors."""
        self.path = path
        self.label = label
        self.truncated = False
        self.count = 0
        self._decoder = json.JSONDecoder()
        self._text = codecs.getincrementaldecoder("utf-8")("strict")
        self._buf = ""
        self._i = 0
        self._eof = False
        self._fd: int | None = None

    def error(self, what: str) -> ReportError:
        return ReportError(f"{self.label}: {what}")

    # -- the file ----------------------------------------------------------------
    def _open(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
        except FileNotFoundError:
            raise self.error("no such file") from None
        except OSError as exc:
            raise self.error(f"cannot be read: {exc.strerror}") from None
        except ValueError as exc:
            raise self.error(f"cannot be read: {exc}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise self.error(f"not a regular file ({file_kind(st.st_mode)}): only trace files are read")
            if st.st_size > MAX_FILE_BYTES:
                raise self.error(f"{st.st_size:,} bytes, over the limit of {MAX_FILE_BYTES:,}")
            if st.st_size == 0:
                raise self.error("empty: not trace-event JSON")
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._read_so_far = 0

    def _read(self, at_least: int) -> None:
        """Append at least ``at_least`` more characters to the buffer, or reach the end."""
        assert self._fd is not None
        if self._i > CHUNK_BYTES:  # drop what was parsed
            self._buf = self._buf[self._i :]
            self._i = 0
        want = max(at_least, CHUNK_BYTES)
        got = 0
        while got < want and not self._eof:
            try:
                data = os.read(self._fd, want - got)
            except OSError as exc:
                raise self.error(f"cannot be read: {exc.strerror}") from None
            self._read_so_far += len(data)
            if self._read_so_far > MAX_FILE_BYTES:
                raise self.error(f"over the limit of {MAX_FILE_BYTES:,} bytes")
            try:
                text = self._text.decode(data, final=not data)
            except UnicodeDecodeError as exc:
                raise self.error(
                    f"not UTF-8 text ({exc.reason} at byte {self._read_so_far - len(data)})"
                ) from None
            if not data:
                self._eof = True
            got += len(data)
            self._buf += text

    def _skip_ws(self) -> str:
        """The next non-blank character ("" at the end of the file)."""
        while True:
            buf, i = self._buf, self._i
            n = len(buf)
            while i < n and buf[i] in _WS:
                i += 1
            self._i = i
            if i < n:
                return buf[i]
            if self._eof:
                return ""
            self._read(CHUNK_BYTES)

    def _value(self, in_array: bool) -> tuple[Any, bool]:
        """The JSON value at the cursor, and False if the file ends inside it (cut off)."""
        extra = CHUNK_BYTES
        while True:
            start = self._i
            try:
                value, end = self._decoder.raw_decode(self._buf, start)
            except json.JSONDecodeError as exc:
                cut = _cut_off(self._buf, exc.pos, exc.msg)  # fails only for want of what follows
                if cut and not self._eof:
                    if len(self._buf) - start > MAX_EVENT_BYTES:
                        raise self.error(f"an event over {MAX_EVENT_BYTES:,} characters") from None
                    self._read(extra)
                    extra *= 2  # a long event: read in growing steps, so parsing stays linear
                    continue
                if cut and in_array:
                    return None, False
                where = self._read_so_far - len(self._buf.encode("utf-8", "surrogatepass")) + exc.pos
                raise self.error(f"not trace-event JSON ({exc.msg}, near byte {max(where, 0):,})") from None
            except RecursionError:
                raise self.error(f"an event nested too deep (the limit is {MAX_DEPTH})") from None
            if end == len(self._buf) and not self._eof:  # a number may go on in the next chunk
                self._read(extra)
                continue
            self._i = end
            return value, True

    # -- the events --------------------------------------------------------------
    def __iter__(self) -> Iterator[dict[str, Any]]:
        self._open()
        try:
            first = self._skip_ws()
            if first == "[":
                self._i += 1
                yield from self._array()
            elif first == "{":
                self._i += 1
                yield from self._object()
            else:
                raise self.error("not trace-event JSON (expected a list of events or a 'traceEvents' list)")
        finally:
            fd, self._fd = self._fd, None
            if fd is not None:
                os.close(fd)

    def _array(self) -> Iterator[dict[str, Any]]:
        while True:
            c = self._skip_ws()
            if c == "]":
                self._i += 1
                return
            if c == "":
                self.truncated = True  # no closing bracket: the process died while recording
                return
            if c == ",":
                self._i += 1
                continue
            value, complete = self._value(in_array=True)
            if not complete:
                self.truncated = True
                return
            if not isinstance(value, dict):
                raise self.error(f"not trace-event JSON (event {self.count + 1} is a {type(value).__name__})")
            if not _depth(value, MAX_DEPTH):
                raise self.error(f"event {self.count + 1} is nested deeper than {MAX_DEPTH}")
            self.count += 1
            yield value

    def _object(self) -> Iterator[dict[str, Any]]:
        found = False
        while True:
            c = self._skip_ws()
            if c == "}":
                break
            if c == "":
                raise self.error("not trace-event JSON (the file ends inside its object)")
            if c == ",":
                self._i += 1
                continue
            key, _ = self._value(in_array=False)
            if not isinstance(key, str):
                raise self.error("not trace-event JSON (an object key that is not a string)")
            if self._skip_ws() != ":":
                raise self.error("not trace-event JSON (expected ':' after a key)")
            self._i += 1
            if key == "traceEvents":
                if self._skip_ws() != "[":
                    raise self.error(
                        "not trace-event JSON (expected a list of events or a 'traceEvents' list)"
                    )
                self._i += 1
                found = True
                yield from self._array()
                if self.truncated:
                    return
            else:
                if self._skip_ws() == "":
                    raise self.error("not trace-event JSON (the file ends inside its object)")
                self._value(in_array=False)  # other keys (metadata): read and let go
        if not found:
            raise self.error("not trace-event JSON (expected a list of events or a 'traceEvents' list)")


_WORDS = ("true", "false", "null")


def _cut_off(buf: str, pos: int, msg: str) -> bool:
    """Whether a value that fails at ``pos`` of ``buf`` fails only because ``buf`` ends (not garbage)."""
    tail = buf[pos:]
    if not tail.strip():
        return True  # "Expecting ..." at the very end
    if msg.startswith("Unterminated string"):
        return True
    if msg.startswith("Invalid \\u") or msg.startswith("Invalid \\escape"):
        return len(tail) <= 6
    tail = tail.strip()
    if len(tail) <= 3 and all(c in "+-.eE0123456789" for c in tail):
        return True  # a number cut after its sign, point or exponent mark
    return any(w.startswith(tail) for w in _WORDS)
