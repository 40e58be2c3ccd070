"""glibc malloc settings for XLA:CPU processes: keep the step's scratch memory mapped.

XLA:CPU allocates one scratch ("temp") buffer per execution of a compiled program and frees it
afterwards. For a training step the buffer is large (264 MB for ``configs/text8_masked.py``:
attention scores and their gradients), and glibc serves requests above 32 MB, and any request
from a thread arena that cannot hold it, with a fresh ``mmap``: every step then touches
~68 000 new pages (one page fault each) and returns them with ``munmap``. On a 2-core machine
that was a third of the training run's CPU time, spent in the kernel (measured by
``tools/bench_malloc.py``).

:func:`configure_malloc` tells glibc to serve every thread from the main arena
(``M_ARENA_MAX = 1``), never to ``mmap`` (``M_MMAP_MAX = 0``) and to keep up to 1 GiB of freed
memory (``M_TRIM_THRESHOLD``): the scratch buffer is then reused from the heap, step after
step. It changes where memory comes from, never what is computed (losses and checkpoints are
bitwise the same). The ``diffax`` command (:func:`diffax.cli.entry_point`) calls it once at
start-up, before jax starts its threads, when the computation will run on the CPU;
:func:`diffax.cli.main` called from Python does not. Set ``DIFFAX_MALLOC=default`` to leave
glibc's defaults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import os
import sys
from collections.abc import Mapping

from diffax.train.options import ConfigError

__all__ = ["configure_malloc"]

# mallopt parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_TRIM_THRESHOLD = 1 << 30

# Installed plugins that put jax's default backend on an accelerator.
_ACCELERATOR_MODULES = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin",
                        "jax_rocm7_plugin", "libtpu")


def _runs_on_cpu(environ: Mapping[str, str]) -> bool:
    platforms = environ.get("JAX_PLATFORMS", environ.get("JAX_PLATFORM_NAME", "")).strip()
    if platforms:
        return platforms.split(",")[0].strip().lower() == "cpu"
    return not any(importlib.util.find_spec(m) is not None for m in _ACCELERATOR_MODULES)


def configure_malloc(*, environ: Mapping[str, str] | None = None) -> str:
    """Sets glibc's malloc to reuse XLA:CPU's per-step scratch memory; returns what it did.

    Call it once, early (before jax creates its CPU client and threads); later calls do no
    harm. Nothing is changed unless the process runs on Linux with glibc, jax will compute on
    the CPU (``JAX_PLATFORMS`` is ``cpu``, or unset with no GPU/TPU plugin installed) and
    ``DIFFAX_MALLOC`` is not ``default``.

    Args:
      environ: the environment to read (default ``os.environ``).

    Returns:
      ``"tuned"`` if the settings were applied, otherwise the reason they were not:
      ``"off: DIFFAX_MALLOC=default"``, ``"off: not glibc"`` or ``"off: accelerator"``.

    Raises:
      ConfigError: (a ValueError) if ``DIFFAX_MALLOC`` is set to something other than
        ``tuned`` or ``default``; ``diffax`` reports it in one line and exits with code 2.

    Example:
      >>> configure_malloc(environ={"DIFFAX_MALLOC": "default"})
      'off: DIFFAX_MALLOC=default'
    """
    environ = os.environ if environ is None else environ
    choice = environ.get("DIFFAX_MALLOC", "tuned").strip().lower()
    if choice not in ("tuned", "default"):
        raise ConfigError("DIFFAX_MALLOC", f"the environment variable DIFFAX_MALLOC must be "
                          f"'tuned' or 'default', got {environ['DIFFAX_MALLOC']!r}.")
    if choice == "default":
        return "off: DIFFAX_MALLOC=default"
    if not sys.platform.startswith("linux"):
        return "off: not glibc"
    libc_name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(libc_name or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018  (present in glibc only, e.g. not in musl)
    except (OSError, AttributeError):
        return "off: not glibc"
    if not _runs_on_cpu(environ):
        return "off: accelerator"
    for param, value in ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0),
                         (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)):
        mallopt(ctypes.c_int(param), ctypes.c_int(value))
    return "tuned"
