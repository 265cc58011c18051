"""Test session setup.

Two fake CPU devices are created for every test process so that the pmap and sharding
tests can run next to the others; this must happen before jax is imported anywhere.
Tests that need float64 use ``with jax.enable_x64(True):`` locally rather than the
global flag, so float32 defaults elsewhere are untouched.
"""

import os

os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=2"
# On a GPU machine, AILUT_TEST_GPU=1 keeps the GPU visible for the CUDA tests.
if os.environ.get("AILUT_TEST_GPU") != "1":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")


def pytest_sessionstart(session):
    from ailut_jax.ops._native import load_module, native_available

    # CI sets this so that a missing native build fails loudly instead of skipping.
    if os.environ.get("AILUT_REQUIRE_NATIVE") == "1":
        assert native_available("cpu"), "AILUT_REQUIRE_NATIVE=1 but the CPU module is missing"
    # The sanitizer run (.ci/sanitize) must test its instrumented module.
    override = os.environ.get("AILUT_NATIVE_DIR")
    if override:
        module = load_module("cpu")
        assert module is not None and module.__file__.startswith(override), module
