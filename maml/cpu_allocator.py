"""Keep freed tensor memory in the process on CPU (glibc malloc), instead of returning it
to the kernel and page-faulting it back at the next inner step.

Every inner step allocates the same activations and gradients again (a 5-shot ConvNet
step at 84x84: ~0.5 GB in tensors of up to 45 MB) and frees them at its end. With
glibc's defaults, blocks above the mmap threshold (dynamic, at most 32 MB) are mmapped
and unmapped per allocation, and freed memory at the top of the heap is trimmed; the
next step then takes a page fault and a zeroing per 4 KiB page: ~870,000 faults per
5-shot meta-step of 5 inner steps, ~30 % of its CPU time (measured, README "Engines
and speed"). Raising both thresholds lets malloc reuse that memory; the process keeps
its peak heap (it does anyway, step after step). No effect on any number computed.

Process-wide and idempotent; skipped where the C library is not glibc (musl, macOS,
Windows) or when the user tunes malloc through the environment (``MALLOC_*`` /
``GLIBC_TUNABLES``).
"""
import ctypes
import os
import platform

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3      # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 1 << 30         # blocks up to 1 GiB come from the heap
TRIM_THRESHOLD = (1 << 31) - 1   # never trim the heap top (the largest int mallopt takes)

_state = {"applied": None}


def user_tunes_malloc(environ=os.environ):
    return any(k.startswith("MALLOC_") or k == "GLIBC_TUNABLES" for k in environ)


def keep_freed_memory():
    """Raise glibc's mmap and trim thresholds once per process. Returns True when the
    settings are in effect, False where they do not apply (see the module doc)."""
    if _state["applied"] is None:
        _state["applied"] = _apply()
    return _state["applied"]


def _apply():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc" or user_tunes_malloc():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
