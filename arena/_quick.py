"""What makes a short command over a large vote file quick: ``qwenrl elo``.

The optional C extensions, loaded for ctypes (:func:`native_library`).

pandas, imported on first use, started early in a thread. ``import pandas`` takes about 0.3 s, as
long as reading a million votes. ``qwenrl elo`` starts the import in a thread
(:func:`import_in_background`) and reads the file meanwhile: the C scanner runs without the GIL,
so both proceed at once. The arena modules therefore do not import pandas at their top but bind
``pd`` to :func:`lazy_module`'s stand-in, which imports pandas (waiting for a background import
already under way) at its first attribute lookup and afterwards answers from the module's own
namespace.

Memory and the garbage collector, while the command runs (:func:`quick_process`): the bootstrap
allocates and frees arrays of megabytes hundreds of times, and glibc gives such blocks back to
the system, so each new one is faulted in and zeroed again (a tenth of the command's time); and
reading builds millions of small objects, which wake the cyclic garbage collector for nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any


class _LazyModule:
    def __init__(self, name: str):
        self.__dict__["_lazy_name"] = name

    def __getattr__(self, attribute: str) -> Any:
        module = importlib.import_module(self.__dict__["_lazy_name"])
        self.__dict__.update(vars(module))  # later lookups skip __getattr__
        return getattr(module, attribute)

    def __repr__(self) -> str:
        return f"<module {self.__dict__['_lazy_name']!r}, imported on first use>"


def lazy_module(name: str) -> Any:
    """A stand-in for module ``name`` that imports it at the first attribute lookup."""
    return _LazyModule(name)


def import_in_background(name: str) -> threading.Thread:
    """Start importing ``name`` in a thread; a later import of it waits for this one. Not a
    daemon thread, so the interpreter never exits in the middle of the import."""
    thread = threading.Thread(target=importlib.import_module, args=(name,), name=f"import {name}")
    thread.start()
    return thread


def native_library(name: str) -> ctypes.CDLL | None:
    """The optional C extension ``arena.<name>`` (``arena/<name>.c``, built at install where a C
    compiler is found), loaded for ctypes; None where it was not built or ``QWENRL_PURE_PYTHON``
    is set, and the caller's Python and numpy code, which gives the same results, runs instead."""
    if os.environ.get("QWENRL_PURE_PYTHON"):
        return None
    try:
        module = importlib.import_module(f"arena.{name}")
    except ImportError:
        return None
    return ctypes.CDLL(module.__file__)


# glibc's mallopt parameters and their defaults
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_DEFAULTS = {_M_TRIM_THRESHOLD: 128 << 10, _M_TOP_PAD: 128 << 10, _M_MMAP_THRESHOLD: 128 << 10}
_KEEP = {_M_TRIM_THRESHOLD: 1 << 30, _M_TOP_PAD: 64 << 20, _M_MMAP_THRESHOLD: 32 << 20}


@contextlib.contextmanager
def quick_process() -> Iterator[None]:
    """While inside: freed memory stays with the process for reuse (glibc only: blocks up to
    32 MB come from the heap, which is not trimmed) and the cyclic garbage collector is off.
    Both are restored on leaving (glibc's adaptive mmap threshold becomes its default value),
    the objects alive then moved out of the collector's way (``gc.freeze``)."""
    mallopt = _mallopt()
    collecting = gc.isenabled()
    gc.disable()
    if mallopt is not None:
        for parameter, value in _KEEP.items():
            mallopt(parameter, value)
    try:
        yield
    finally:
        if mallopt is not None:
            for parameter, value in _DEFAULTS.items():
                mallopt(parameter, value)
        if collecting:
            # what the command built is referenced or freed by now: frozen, it is not traversed
            # again by the next collection (the one at interpreter exit, for the command line)
            gc.freeze()
            gc.enable()


def _mallopt() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None).mallopt  # glibc; musl has none
    except (OSError, AttributeError):
        return None
    function.argtypes, function.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return function
