"""Test configuration: 8 simulated CPU devices, strict rank promotion, float64 on request,
and XLA without LLVM optimisation (compile time is most of the suite's time).

XLA_FLAGS must be set before jax is imported anywhere, so it happens at the top of this file,
which pytest imports before any test module.
"""

import os

os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
# The suite is bound by XLA compilation of tiny programs, not by running them: LLVM's
# optimisation passes are more than half of the compile time (a UNet train step and its
# initialisation: 50 s -> 27 s of CPU; the whole suite ~25% less CPU) while the few tests that
# run long loops take up to 2x longer. XLA's own HLO passes still run; float32 results can
# differ from an optimised build in the last bits (measured: 1e-7 relative after 5 training
# steps), far inside every tolerance. Subprocesses get the same flags (tests/_xla.py).
if "xla_backend_optimization_level" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_backend_optimization_level=0"
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def x64():
    """Run the test in float64; restores the previous setting afterwards."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drops jax's caches of compiled programs after each test module.

    Every XLA:CPU executable keeps its JIT-compiled code in its own memory mappings (a
    code/read-only/data triple per compiled object) for as long as a jax cache holds it. A test
    worker compiles thousands of distinct programs; kept, they reached Linux's
    vm.max_map_count (65 530) near the end of the suite, the next compile failed and the
    worker died (SIGSEGV in the C++ unwinder raising that error: a core dump of one showed
    65 443 mappings, 21 000 of them such triples). Programs are rarely shared across test
    modules, so dropping them between modules costs little compile time.
    """
    yield
    jax.clear_caches()
