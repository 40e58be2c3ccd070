"""``python -m diffax.tasks CONFIG[:variant] --workdir DIR``: runs a task example's config.

The config file (``configs/tasks/*.py``) defines ``get_config(variant="")`` whose ``task``
names the module whose ``run(config, workdir)`` is called; ``--config.KEY=VALUE`` overrides
keys (values parsed as Python literals when they parse, strings otherwise).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import json
import os
import sys

TASKS = ("classifier", "super_resolution", "purification", "anomaly", "segmentation",
         "inverse_problems", "medical")


def load_config(spec: str):
    """``path/to/config.py[:variant]`` -> the ConfigDict its ``get_config`` returns."""
    path, _, variant = spec.partition(":")
    if not os.path.exists(path):
        raise SystemExit(f"diffax.tasks: config file {path!r} does not exist.")
    module_spec = importlib.util.spec_from_file_location("task_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(variant) if variant else module.get_config()


def _override(config, item: str) -> None:
    key, sep, raw = item.partition("=")
    if not sep or not key.startswith("--config."):
        raise SystemExit(f"diffax.tasks: cannot parse {item!r}; use --config.KEY=VALUE.")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    *parents, last = key[len("--config."):].split(".")
    node = config
    for part in parents:
        node = node[part]
    if last not in node:
        raise SystemExit(f"diffax.tasks: unknown config key {key[len('--config.'):]!r}.")
    node[last] = value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diffax.tasks", description=__doc__)
    parser.add_argument("config", help="configs/tasks/<name>.py[:variant]")
    parser.add_argument("--workdir", required=True)
    args, rest = parser.parse_known_args(argv)
    config = load_config(args.config)
    with config.unlocked():
        for item in rest:
            _override(config, item)
    if config.task not in TASKS:
        raise SystemExit(f"diffax.tasks: config.task={config.task!r} is not one of {TASKS}.")
    module = importlib.import_module(f"diffax.tasks.{config.task}")
    metrics = module.run(config, args.workdir)
    json.dump(metrics, sys.stdout, indent=2, default=float)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
