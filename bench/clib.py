"""A stand-in C library for the benchmarks: calls that sleep or spin, with or
without one process-wide mutex held, like libvirt's big lock.

Built with cffi on first use into ``bench/_build`` (gcc is on every machine);
no binary is committed. cffi releases the GIL around every call, as a real C
binding does.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

MODULE = "_fairpool_bench_clib"
BUILD_DIR = Path(__file__).resolve().parent / "_build"

CDEF = """
    int fp_noop(void);
    void fp_sleep_us(long us);
    void fp_spin_us(long us);
    void fp_locked_sleep_us(long us);
    void fp_locked_spin_us(long us);
    long fp_lock_contended(void);
"""

SOURCE = r"""
#include <pthread.h>
#include <time.h>

static pthread_mutex_t big_lock = PTHREAD_MUTEX_INITIALIZER;
static long contended = 0;

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

int fp_noop(void) { return 0; }

void fp_sleep_us(long us) {
    struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };
    while (nanosleep(&ts, &ts) != 0) {}
}

void fp_spin_us(long us) {
    double end = now_us() + us;
    while (now_us() < end) {}
}

static void lock_big(void) {
    if (pthread_mutex_trylock(&big_lock) != 0) {
        __sync_fetch_and_add(&contended, 1);
        pthread_mutex_lock(&big_lock);
    }
}

void fp_locked_sleep_us(long us) { lock_big(); fp_sleep_us(us); pthread_mutex_unlock(&big_lock); }
void fp_locked_spin_us(long us) { lock_big(); fp_spin_us(us); pthread_mutex_unlock(&big_lock); }
long fp_lock_contended(void) { return __sync_fetch_and_add(&contended, 0); }
"""

_lib: Any = None


def _build() -> None:
    from cffi import FFI

    ffi = FFI()
    ffi.cdef(CDEF)
    ffi.set_source(MODULE, SOURCE, extra_compile_args=["-O2"], libraries=["pthread"])
    BUILD_DIR.mkdir(exist_ok=True)
    ffi.compile(tmpdir=str(BUILD_DIR), verbose=False)


def _load() -> ModuleType | None:
    for path in BUILD_DIR.glob(f"{MODULE}*.so"):
        spec = importlib.util.spec_from_file_location(MODULE, path)
        if spec is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[MODULE] = module
        return module
    return None


def lib() -> Any:
    """The compiled library's ``lib`` object, building it on first use."""
    global _lib
    if _lib is None:
        module = _load()
        if module is None:
            _build()
            module = _load()
        if module is None:
            raise RuntimeError(f"building the stand-in C library in {BUILD_DIR} produced no module")
        _lib = module.lib  # type: ignore[attr-defined]
    return _lib
