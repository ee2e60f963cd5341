"""The trace file and its writer thread: safe creation, a bounded buffer, one file per process.

Callers (any thread: the hub's, a worker, a plain native thread) only
:meth:`TraceSink.append` a tuple to a deque. When the deque is full the event
is dropped and counted, never waited for. A native writer thread (started
with :mod:`fairpool._native`, so it is a real thread even under
``eventlet.monkey_patch()``; it never touches a hub) turns the tuples into
JSON and writes them, in chunks of :data:`CHUNK_EVENTS` with the GIL given
back between chunks (a short sleep, so the hub's thread surely gets it),
at least every :data:`FLUSH_INTERVAL` seconds. What a
SIGTERM or SIGKILL loses is at most the last half second.

The file is created with ``O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC`` at mode
0600: an existing path is never opened, truncated or chmodded. If the path is
taken by a regular file (an earlier run's trace, or the parent's when a
subprocess inherits ``FAIRPOOL_TRACE``), the trace goes to a per-process name
beside it, ``<stem>.<pid><ext>``, and a warning says which. Anything else
(a symbolic link, a device, a FIFO) is refused. A path that is a directory
(or ends with ``/``) gets ``fairpool-<pid>.json`` inside it, created through
the directory's own descriptor (opened with ``O_DIRECTORY | O_NOFOLLOW``: a
symbolic link there is refused); a missing directory's last component is made
at mode 0700 (a missing parent is an error). Whether the path names a
directory is decided once, at start: a forked child whose directory was
removed makes it again, never a file in its place or beside it. ``{pid}`` and
``{host}`` in the path are replaced by the process id and the host name.

After ``fork()`` the child drops the parent's buffer, lock and file (they
are the parent's) and, on its first event, starts its own writer and its own
file, named from the same template: ``{pid}`` expanded, ``fairpool-<pid>.json``
in a directory, or the per-process name beside the parent's.

Each file starts with an anchor event (``fairpool_anchor``: the wall clock and
the monotonic clock read together, their uncertainty, host name, boot id,
pid), so ``fairpool report`` can put files from several processes and hosts
on one timeline.

If a file cannot be written (a full disk, a file size limit), the writer
warns once, counts it (:func:`failures`), stops, and the tracer turns itself
off: the service runs on.

Thread rules: ``append``/``drop``/``wake`` run in any thread and take no lock
but ``_drop_lock`` (for the exact drop count, on the full path only) and
``_start_lock`` (with ``acquire(False)``, once per child process). Everything
else belongs to the writer thread, or to whoever calls :meth:`start` and
:meth:`close` (one thread, under trace's ``_active_lock``).
"""

from __future__ import annotations

import errno
import json
import logging
import socket
import stat
import sys
from collections import deque
from collections.abc import Callable
from typing import Any

from . import _faultlog
from ._native import allocate_lock, os, start_thread, time

__all__ = [
    "BUFFER_EVENTS",
    "FLUSH_INTERVAL",
    "TraceFileError",
    "TraceSink",
    "create_file",
    "failures",
    "per_process_path",
    "warn",
]

#: Events held in memory at most; past this, events are dropped and counted.
BUFFER_EVENTS = 16384
#: The writer is woken when this many events wait (else every FLUSH_INTERVAL).
WAKE_EVENTS = 2048
#: Seconds between writes at most: what a SIGTERM or SIGKILL may lose.
FLUSH_INTERVAL = 0.5
#: Events encoded at once (about a third of a millisecond of the GIL) ...
CHUNK_EVENTS = 128
#: ... and seconds the writer sleeps between two chunks, so a thread waiting for the GIL
#: (the hub) surely gets it: giving it back only for a write, the writer could take it
#: straight back, and the hub would wait for the interpreter's switch interval (5 ms).
CHUNK_PAUSE = 0.0002
#: Seconds ``close()`` waits for the writer to finish the file.
CLOSE_TIMEOUT = 5.0

log = logging.getLogger("fairpool")
_failures = 0


class TraceFileError(Exception):
    """The trace file cannot be created; the message says why."""


def failures() -> int:
    """How many times in this process a trace could not be started or written (each warned once)."""
    return _failures


def count_failure() -> None:
    global _failures
    _failures += 1


def warn(message: str) -> None:
    """One warning on the ``fairpool`` logger, or on stderr where logging's locks are green."""
    try:
        if _faultlog._logging_is_safe_here():
            log.warning(message)
        else:
            sys.stderr.write(message + "\n")
    except Exception:  # noqa: BLE001 - a warning must not become a fault
        pass


# -- names ----------------------------------------------------------------------


_gethostname = socket.gethostname  # kept at import, as _native keeps its originals: a patch is in place


def _hostname() -> str:
    try:
        return _gethostname()
    except OSError:
        return "unknown-host"


def placeholders(template: str, pid: int) -> str:
    """``template`` with ``{pid}`` and ``{host}`` replaced."""
    return template.replace("{pid}", str(pid)).replace("{host}", _hostname())


def names_directory(template: str, pid: int) -> bool:
    """Whether a trace path names a directory: it ends with ``/`` (or ``/.``), or is a directory now.

    A symbolic link is not a directory here (``lstat``): without a ``/`` it is
    refused as any link at the path is; with one, :func:`open_directory` refuses it.
    """
    if os.path.basename(template) in ("", ".", ".."):
        return True
    try:
        return stat.S_ISDIR(os.lstat(placeholders(template, pid)).st_mode)
    except (OSError, ValueError):
        return False


def expand(template: str, pid: int, directory: bool = False) -> str:
    """``{pid}`` and ``{host}`` replaced; a directory gets ``fairpool-<pid>.json`` inside it."""
    path = placeholders(template, pid)
    if directory:
        path = os.path.join(path, f"fairpool-{pid}.json")
    return path


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_dir_once(path: str) -> int | None:
    """The directory at ``path``, opened without following a link (None if nothing is there)."""
    try:
        fd: int = os.open(path, _DIR_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        what = _what(path)
        if what is None and exc.errno in (errno.ELOOP, errno.ENOTDIR):
            what = "a regular file" if exc.errno == errno.ENOTDIR else "a symbolic link"
        if what is not None and what != "a directory":
            raise TraceFileError(f"refusing the trace directory {path!r}: it is {what}") from None
        raise TraceFileError(f"cannot use the trace directory {path!r}: {exc.strerror}") from None
    return fd


def open_directory(path: str) -> int:
    """Open the trace directory ``path``, creating its last component (mode 0700) if it is missing.

    Never follows a symbolic link at ``path`` and never creates a missing
    parent; whatever else is there (a link, a file) is refused.

    Raises:
        TraceFileError: ``path`` is not a directory, or cannot be created or opened.
    """
    fd = _open_dir_once(path)
    if fd is not None:
        return fd
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass  # made meanwhile (or a dangling link): checked as it is opened below
    except FileNotFoundError:
        parent = os.path.dirname(path.rstrip(os.sep)) or os.sep
        raise TraceFileError(
            f"cannot create the trace directory {path!r}: its parent {parent!r} does not exist"
        ) from None
    except OSError as exc:
        raise TraceFileError(f"cannot create the trace directory {path!r}: {exc.strerror}") from None
    fd = _open_dir_once(path)
    if fd is None:
        raise TraceFileError(f"cannot use the trace directory {path!r}: it vanished as it was created")
    return fd


def per_process_path(path: str, pid: int, attempt: int = 0) -> str:
    """The per-process name beside ``path``: ``dir/nova.json`` -> ``dir/nova.<pid>.json``."""
    stem, ext = os.path.splitext(path)
    if not ext or os.sep in ext:
        stem, ext = path, ""
    suffix = f"{pid}" if attempt == 0 else f"{pid}-{attempt}"
    return f"{stem}.{suffix}{ext}"


_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)


def _what(path: str, dir_fd: int | None = None) -> str | None:
    """What is at ``path`` if it is not a regular file ("a symbolic link", ...), or None."""
    try:
        st = os.lstat(path, dir_fd=dir_fd)
    except OSError:
        return None
    return None if stat.S_ISREG(st.st_mode) else file_kind(st.st_mode)


def file_kind(mode: int) -> str:
    """What a file of ``st_mode`` ``mode`` is, in words, when it is not a regular file."""
    for test, name in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _open_new(path: str, dir_fd: int | None = None) -> int:
    fd: int = os.open(path, _FLAGS, 0o600, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # cannot happen with O_CREAT|O_EXCL; checked all the same
            raise TraceFileError(f"{path!r} is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def create_file(
    template: str, pid: int, derive: bool = False, directory: bool = False
) -> tuple[int, str, str | None]:
    """Create the trace file; returns ``(fd, path, note)``.

    ``note`` says why the path is not the one asked for (or is None). With
    ``derive`` (a forked child) the per-process name is used at once. With
    ``directory`` (see :func:`names_directory`) the file is
    ``fairpool-<pid>.json`` inside the directory ``template`` names, which is
    created if it is missing (:func:`open_directory`); the file is never put
    anywhere else.

    Raises:
        TraceFileError: The path is refused or cannot be created.
    """
    try:
        asked = expand(template, pid, directory)
    except (OSError, ValueError) as exc:
        raise TraceFileError(f"cannot use the trace path {template!r}: {exc}") from None
    if directory:
        folder, name = os.path.split(asked)
        try:
            dir_fd = open_directory(folder)
        except ValueError as exc:  # an embedded NUL byte
            raise TraceFileError(f"cannot use the trace path {template!r}: {exc}") from None
        try:
            stem = name[: -len(".json")]
            names = [name] + [f"{stem}-{n}.json" for n in range(1, 20)]
            return _create_first(folder, names, asked, dir_fd)
        finally:
            os.close(dir_fd)
    first = asked
    if derive and "{pid}" not in template:
        first = per_process_path(asked, pid)
    candidates = [first] + [per_process_path(asked, pid, n) for n in range(0 if first == asked else 1, 20)]
    return _create_first("", candidates, asked, None)


def _create_first(
    folder: str, names: list[str], asked: str, dir_fd: int | None
) -> tuple[int, str, str | None]:
    """Create the first of ``names`` (in ``dir_fd``, else as they are) that does not exist."""
    note = None
    for name in names:
        path = os.path.join(folder, name) if folder else name
        try:
            return _open_new(name, dir_fd), path, note
        except FileExistsError:
            what = _what(name, dir_fd)
            if what is not None:
                raise TraceFileError(f"refusing the trace path {path!r}: it is {what}") from None
            if path == asked:
                note = f"{asked!r} exists (an earlier trace, or another process's)"
            continue  # a regular file: never truncated; try the next per-process name
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise TraceFileError(f"refusing the trace path {path!r}: it is a symbolic link") from None
            what = _what(name, dir_fd)
            if what is not None:
                raise TraceFileError(f"refusing the trace path {path!r}: it is {what}") from None
            raise TraceFileError(f"cannot write the trace file {path!r}: {exc.strerror}") from None
        except ValueError as exc:  # an embedded NUL byte
            raise TraceFileError(f"cannot use the trace path {path!r}: {exc}") from None
    raise TraceFileError(f"cannot write the trace file {asked!r}: it and its per-process names all exist")


# -- the anchor -----------------------------------------------------------------


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


def anchor(pid: int) -> dict[str, Any]:
    """The wall clock and the monotonic clock read together (microseconds), and where."""
    best: tuple[int, int, int] | None = None
    for _ in range(5):  # the tightest of a few readings
        w1 = time.time_ns()
        m = time.monotonic_ns()
        w2 = time.time_ns()
        if best is None or w2 - w1 < best[2]:
            best = ((w1 + w2) // 2, m, w2 - w1)
    assert best is not None
    wall, mono, spread = best
    return {
        "wall_us": wall / 1000.0,
        "monotonic_us": mono / 1000.0,
        "uncertainty_us": max(spread / 2000.0, 0.001),
        "hostname": _hostname(),
        "boot_id": _boot_id(),
        "pid": pid,
        "ppid": os.getppid(),
    }


# -- encoding -------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - an unencodable value is written as its type
        return f"<{type(value).__name__}>"
    return text[:200]


def _to_dict(ev: tuple[Any, ...], pid: int) -> dict[str, Any]:
    """The JSON object of one event tuple (see ``TraceSink.append``)."""
    ph = ev[0]
    if ph == "X":
        _, name, cat, ts, dur, tid, args = ev
        d = {"ph": "X", "name": name, "cat": cat, "ts": ts, "dur": dur, "pid": pid, "tid": tid}
    elif ph == "C":
        _, name, ts, args = ev
        d = {"ph": "C", "name": name, "ts": ts, "pid": pid, "tid": 0}
    elif ph == "M":
        _, name, tid, args = ev
        d = {"ph": "M", "name": name, "pid": pid, "tid": tid}
    elif ph == "i":
        _, name, cat, ts, tid, args = ev
        d = {"ph": "i", "s": "t", "name": name, "cat": cat, "ts": ts, "pid": pid, "tid": tid}
    elif ph == "s" or ph == "f":
        _, flow_id, ts, tid = ev
        d = {"ph": ph, "name": "pool call", "cat": "pool", "id": flow_id, "ts": ts, "pid": pid, "tid": tid}
        if ph == "f":
            d["bp"] = "e"
        return d
    else:  # a dict given whole
        d = dict(ev[1])
        d.setdefault("pid", pid)
        return d
    if args:
        d["args"] = args
    return d


class TraceSink:
    """The buffer, the writer thread and the file of one tracer. See the module docstring."""

    def __init__(self, template: str, process_label: str, on_failure: Callable[[str], None]) -> None:
        #: Whether the path names a directory (decided once: a forked child whose
        #: directory was removed makes it again, never a file in its place).
        self.directory = names_directory(template, os.getpid())
        try:
            template = os.path.abspath(template)  # a child that changes directory keeps its parent's
        except (OSError, ValueError):
            pass  # refused with a clear message by create_file
        self.template = template
        self.process_label = process_label
        self.on_failure = on_failure
        self.path = ""
        self.dropped = 0  #: events dropped because the buffer was full (exact)
        self.error: str | None = None  #: why writing stopped, if it failed
        self._encoder = json.JSONEncoder(
            separators=(",", ":"), default=_json_default, check_circular=False, allow_nan=False
        )
        self._reset(os.getpid())

    def _reset(self, pid: int) -> None:
        self.pid = pid
        self._buf: deque[tuple[Any, ...]] = deque()
        self._room = BUFFER_EVENTS
        self._wake_at = WAKE_EVENTS
        self._signalled = False
        self._wake = allocate_lock()
        self._wake.acquire()  # released by wake(): a binary semaphore
        self._drop_lock = allocate_lock()
        self._start_lock = allocate_lock()
        self._thread: Any = None
        self._fd: int | None = None
        self._first = True
        self._stopping = False
        self._written_drops = 0
        self.dropped = 0

    # -- any thread -------------------------------------------------------------
    def append(self, event: tuple[Any, ...]) -> None:
        """Add one event. Never blocks: a full buffer drops the event and counts it."""
        buf = self._buf
        if len(buf) < self._room:
            buf.append(event)
            if len(buf) >= self._wake_at and not self._signalled:
                self.wake()
        else:
            with self._drop_lock:
                self.dropped += 1

    def wake(self) -> None:
        """Have the writer write now (or start it, in a forked child's first event)."""
        self._signalled = True
        if self._thread is None:
            if self._fd is None and not self._stopping and self._start_lock.acquire(False):
                self._wake_at = WAKE_EVENTS
                try:
                    self._thread = start_thread(self._run, (True,), "fairpool-trace-writer")
                except Exception as exc:  # noqa: BLE001 - no thread: tracing off, service on
                    self._fail(f"cannot start the trace writer thread ({exc})")
            return
        try:
            self._wake.release()
        except RuntimeError:
            pass  # already released: the writer is on its way

    def buffered(self) -> int:
        return len(self._buf)

    # -- the owner (start, close, fork) ------------------------------------------
    def start(self) -> None:
        """Create the file now (raising TraceFileError), write its head, start the writer."""
        fd, self.path, note = create_file(self.template, self.pid, directory=self.directory)
        self._fd = fd
        if note:
            warn(f"fairpool: {note}; tracing to {self.path!r}")
        try:
            self._write_head()
        except OSError as exc:
            os.close(fd)
            self._fd = None
            raise TraceFileError(f"cannot write the trace file {self.path!r}: {exc.strerror}") from None
        try:
            self._thread = start_thread(self._run, (False,), "fairpool-trace-writer")
        except Exception as exc:  # noqa: BLE001 - the OS would not give a thread
            self._close_fd()
            raise TraceFileError(f"cannot start the trace writer thread for {self.path!r}: {exc}") from None

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Write what is buffered, close the JSON array and the file (waits for the writer)."""
        self._stopping = True
        self._room = 0
        thread = self._thread
        if thread is None:
            return  # a forked child that recorded nothing: no file
        try:
            self._wake.release()
        except RuntimeError:
            pass
        thread.join(timeout)

    def after_fork_in_child(self) -> None:
        """In a forked child: forget the parent's buffer, locks, thread and file; start on the first event."""
        fd = self._fd
        self._reset(os.getpid())
        self._wake_at = 1  # the first event starts this process's writer and file
        self.error = None
        if fd is not None:
            try:
                os.close(fd)  # the parent's file: this process never writes to it
            except OSError:
                pass

    # -- the writer thread ------------------------------------------------------
    def _run(self, create: bool) -> None:
        try:
            if create:
                fd, self.path, note = create_file(
                    self.template, self.pid, derive=True, directory=self.directory
                )
                self._fd = fd
                if note:
                    warn(f"fairpool: {note}; tracing to {self.path!r}")
                self._write_head()
            wake = self._wake
            while True:
                wake.acquire(True, FLUSH_INTERVAL)
                self._signalled = False
                stopping = self._stopping
                self._drain()
                if stopping:
                    break
            self._write_text("\n]\n")
            self._close_fd()
        except TraceFileError as exc:
            self._fail(str(exc))
        except OSError as exc:
            self._fail(f"writing the trace file {self.path!r} failed: {exc.strerror or exc}")
        except Exception as exc:  # noqa: BLE001 - the writer must never end in a thread traceback
            self._fail(f"the trace writer failed: {exc!r}")

    def _write_head(self) -> None:
        head = [
            _to_dict(("M", "process_name", 0, {"name": f"{self.process_label} (pid {self.pid})"}), self.pid),
            _to_dict(("M", "fairpool_anchor", 0, anchor(self.pid)), self.pid),
        ]
        self._write_text("[\n" + ",\n".join(self._encoder.encode(d) for d in head))
        self._first = False

    def _drain(self) -> None:
        buf = self._buf
        pop = buf.popleft
        pid = self.pid
        first = True
        while buf:
            if not first:
                time.sleep(CHUNK_PAUSE)
            first = False
            chunk = []
            for _ in range(CHUNK_EVENTS):
                try:
                    chunk.append(_to_dict(pop(), pid))
                except IndexError:
                    break
            text = self._encode(chunk) if chunk else ""
            if text:
                self._write_text(",\n" + text)
        dropped = self.dropped
        if dropped != self._written_drops:
            self._written_drops = dropped
            event = ("C", "fairpool trace: events dropped", time.monotonic_ns() / 1000.0, {"events": dropped})
            self._write_text(",\n" + self._encoder.encode(_to_dict(event, pid)))

    def _encode(self, chunk: list[dict[str, Any]]) -> str:
        try:
            return self._encoder.encode(chunk)[1:-1]
        except (ValueError, TypeError, RecursionError):
            pass
        good = []  # one bad event (a NaN, a cycle): encode one by one, drop the bad ones
        for d in chunk:
            try:
                good.append(self._encoder.encode(d))
            except (ValueError, TypeError, RecursionError):
                with self._drop_lock:
                    self.dropped += 1
        return ",".join(good)

    def _write_text(self, text: str) -> None:
        fd = self._fd
        if fd is None:
            return
        data = memoryview(text.encode("ascii", "backslashreplace"))
        while data:
            n = os.write(fd, data)
            data = data[n:]

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _fail(self, why: str) -> None:
        """Writing stopped: one warning, counted; the tracer turns itself off."""
        self._room = 0
        self._stopping = True
        self.error = why
        count_failure()
        try:
            self._close_fd()
        except OSError:
            pass
        warn(f"fairpool: {why}; tracing is off, the service runs on")
        try:
            self.on_failure(why)
        except Exception:  # noqa: BLE001
            pass
