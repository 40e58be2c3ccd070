"""XLA_FLAGS for the tests' subprocesses."""

import os

_DEVICES = "--xla_force_host_platform_device_count"


def xla_flags(devices: int, *extra: str) -> str:
    """This process's XLA_FLAGS (set in tests/conftest.py) with ``devices`` simulated CPU
    devices and ``extra`` flags, so that a subprocess compiles like the test process does."""
    kept = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith(_DEVICES)]
    return " ".join([*kept, f"{_DEVICES}={devices}", *extra])
