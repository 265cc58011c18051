"""Loading and registering the compiled AiLUT FFI modules.

``ailut_jax._ailut_cpu`` is always built; ``ailut_jax._ailut_cuda`` only where a CUDA
compiler was found at build time. Each exposes ``registrations()``: a dict mapping the
target names (``ailut_forward``, ``ailut_backward``, ``lut_forward``, ``lut_backward``)
to FFI handler capsules. The same names are registered for the "cpu" and "CUDA"
platforms so the Python wrapper does not care where it runs.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import os
from pathlib import Path

import jax

TARGETS = ("ailut_forward", "ailut_backward", "lut_forward", "lut_backward")
_MODULES = {"cpu": "ailut_jax._ailut_cpu", "CUDA": "ailut_jax._ailut_cuda"}


@functools.cache
def load_module(platform: str):
    """The compiled module for ``platform`` ("cpu" or "CUDA"), or None if not built.

    ``AILUT_NATIVE_DIR`` names a folder holding the compiled modules to use instead of
    the installed ones (the sanitizer build in CI, a CUDA build made elsewhere).
    """
    name = _MODULES[platform]
    override = os.environ.get("AILUT_NATIVE_DIR")
    if override:
        short = name.rsplit(".", 1)[1]
        found = sorted(Path(override).glob(f"{short}.*.so")) + sorted(
            Path(override).glob(f"{short}.so")
        )
        if not found:
            return None
        spec = importlib.util.spec_from_file_location(name, found[0])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


@functools.cache
def _register(platform: str) -> bool:
    module = load_module(platform)
    if module is None:
        return False
    for name, capsule in module.registrations().items():
        jax.ffi.register_ffi_target(name, capsule, platform=platform)
        # Lets a batch-sharded call run per device instead of all-gathering first; the
        # call site states how many leading dims are batch (see num_batch_dims_metadata).
        jax.ffi.register_ffi_target_as_batch_partitionable(name)
    return True


def native_available(backend: str | None = None) -> bool:
    """True when the native op is built and registered for ``backend`` (default: current)."""
    backend = backend or jax.default_backend()
    platform = {"cpu": "cpu", "gpu": "CUDA", "cuda": "CUDA"}.get(backend)
    if platform is None:
        return False
    # Register every module that is built, not just the current backend's: arrays
    # committed to the CPU device of a GPU machine still lower to the "cpu" target.
    registered = {p: _register(p) for p in _MODULES}
    return registered[platform]


def num_batch_dims_metadata(n: int):
    """Context that tags the enclosed FFI call with its number of leading batch dims."""
    if n <= 0:
        return contextlib.nullcontext()
    from jax.experimental.xla_metadata import set_xla_metadata

    return set_xla_metadata(num_batch_dims=str(n))
