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
