"""``python -m diffax.tasks CONFIG[:variant] --workdir DIR``: the same as ``diffax task``.

Kept for existing scripts; the flags are parsed by :mod:`diffax.cli` (``--config.KEY=VALUE``
overrides keys of the task config).
"""

from __future__ import annotations

import importlib.util
import os
import sys

from diffax.tasks import TASKS

__all__ = ["TASKS", "load_config", "main"]


def load_config(spec: str):
    """``path/to/config.py[:variant]`` -> the ConfigDict its ``get_config`` returns."""
    path, _, variant = spec.partition(":")
    if not os.path.exists(path):
        raise SystemExit(f"diffax.tasks: config file {path!r} does not exist.")
    module_spec = importlib.util.spec_from_file_location("task_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(variant) if variant else module.get_config()


def main(argv=None) -> int:
    """Runs ``diffax task`` with ``argv``; a usage error raises ``SystemExit`` with its line."""
    from diffax import cli

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return cli.run_command("task", argv)
    except cli.UsageError as e:
        raise SystemExit(f"diffax.tasks: {e}") from None


if __name__ == "__main__":
    raise SystemExit(main())
