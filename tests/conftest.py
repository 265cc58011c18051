"""Test session setup.

Two fake CPU devices are created for every test process so that the pmap and sharding
tests can run next to the others; this must happen before jax is imported anywhere.
Tests that need float64 use ``with jax.enable_x64(True):`` locally rather than the
global flag, so float32 defaults elsewhere are untouched.

Environment:

- ``AILUT_REQUIRE_ALL=1`` (set by CI): a skipped test fails the run, except the CUDA
  numerics (marker ``cuda``), which need a GPU, and the AVX-512 kernels' comparison
  (marker ``avx512``), which needs a CPU with AVX-512F. A green run has then run
  everything else: the native module, the authors' checkpoints, torch, ffmpeg.
- ``AILUT_REQUIRE_NATIVE=1``: the native CPU module must be built (implied by the above).
- ``AILUT_OFFICIAL_DIR``: where the authors' checkpoints and photo are (default
  ``../shared/official`` next to the repository); see ``_models.official_file``.
"""

import os

import pytest

os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=2"
# On a GPU machine, AILUT_TEST_GPU=1 keeps the GPU visible for the CUDA tests.
if os.environ.get("AILUT_TEST_GPU") != "1":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

REQUIRE_ALL = os.environ.get("AILUT_REQUIRE_ALL") == "1"
# Only these may skip under AILUT_REQUIRE_ALL=1: they need an NVIDIA GPU, or a CPU with
# AVX-512F.
ALLOWED_SKIP_MARKERS = ("cuda", "avx512")


def pytest_sessionstart(session):
    from ailut_jax.ops._native import load_module, native_available

    if REQUIRE_ALL or os.environ.get("AILUT_REQUIRE_NATIVE") == "1":
        assert native_available("cpu"), "the native CPU module is required but not built"
    # The sanitizer run (.ci/sanitize) must test its instrumented module.
    override = os.environ.get("AILUT_NATIVE_DIR")
    if override:
        module = load_module("cpu")
        assert module is not None and module.__file__.startswith(override), module


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not (REQUIRE_ALL and report.skipped):
        return
    if any(item.get_closest_marker(m) for m in ALLOWED_SKIP_MARKERS):
        return
    report.outcome = "failed"
    report.longrepr = (
        f"{item.nodeid} was skipped under AILUT_REQUIRE_ALL=1 ({_skip_reason(report)}); "
        "only the CUDA numerics may skip here"
    )


def pytest_terminal_summary(terminalreporter):
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    reasons: dict[str, int] = {}
    for report in skipped:
        reason = _skip_reason(report)
        reasons[reason] = reasons.get(reason, 0) + 1
    terminalreporter.write_sep("-", f"{len(skipped)} skipped, by reason")
    for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{count:5d}  {reason}")
