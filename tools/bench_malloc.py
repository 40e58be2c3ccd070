"""Benchmark: ``diffax train`` with glibc's default malloc against diffax's tuned settings.

:mod:`diffax.train.malloc` (applied by the ``diffax`` command on the CPU) makes glibc reuse
XLA:CPU's per-step scratch buffer instead of mapping and faulting it in again at every step.
This script runs the same training command in fresh processes with ``DIFFAX_MALLOC=default``
and ``DIFFAX_MALLOC=tuned``, alternating over rounds, and prints side by side: wall time, user
and system CPU seconds, minor page faults (from the child's ``rusage``) and the final loss
(which must be identical: the setting changes where memory comes from, not what is computed).
Times of one round are comparable with each other only on a quiet machine; CPU seconds and
faults are what to read under load.

Usage::

  python tools/bench_malloc.py                                   # text8_masked, 300 steps
  python tools/bench_malloc.py --config configs/digits_ddpm.py --steps 200 --rounds 2 \\
      --out tools/bench_malloc.md
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def _run(config: str, steps: int, choice: str, workdir: str) -> dict:
    shutil.rmtree(workdir, ignore_errors=True)
    env = dict(os.environ, DIFFAX_MALLOC=choice)
    for name in ("MALLOC_ARENA_MAX", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_"):
        env.pop(name, None)  # glibc's own variables would blur the comparison
    cmd = [sys.executable, "-m", "diffax.cli", "train", "--config", config, "--workdir",
           workdir, f"--config.train.num_steps={steps}",
           f"--config.train.checkpoint_every={steps}", f"--config.train.log_every={steps}",
           "--config.train.sample_every=0"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out[-2000:]}")
    losses = re.findall(r"\bloss ([-0-9.e+]+)", out)
    return {"wall": wall, "user": usage.ru_utime, "sys": usage.ru_stime,
            "faults": usage.ru_minflt, "loss": losses[-1] if losses else "?"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/text8_masked.py")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=None, help="also write the table to this file")
    args = parser.parse_args()
    if args.steps < 1 or args.rounds < 1:
        parser.error("--steps and --rounds must be positive")

    results: dict[str, list[dict]] = {"default": [], "tuned": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = ("default", "tuned") if r % 2 == 0 else ("tuned", "default")
            for choice in order:
                results[choice].append(_run(args.config, args.steps, choice,
                                            os.path.join(tmp, choice)))
                print(f"round {r + 1} {choice}: {results[choice][-1]}", file=sys.stderr)

    losses = {c: {x["loss"] for x in rs} for c, rs in results.items()}
    same = losses["default"] == losses["tuned"] and len(losses["default"]) == 1
    load = os.getloadavg()[0]
    lines = [
        f"`python tools/bench_malloc.py --config {args.config} --steps {args.steps} "
        f"--rounds {args.rounds}` (one `diffax train` process per cell, compile included; "
        f"medians over rounds; 1-min load average at the end {load:.1f})",
        "",
        "| DIFFAX_MALLOC | wall s | user CPU s | system CPU s | CPU s total | minor faults "
        "| final loss |",
        "|---|---|---|---|---|---|---|",
    ]
    med = {c: {k: statistics.median(x[k] for x in rs) for k in ("wall", "user", "sys",
                                                                  "faults")}
           for c, rs in results.items()}
    for c in ("default", "tuned"):
        m = med[c]
        lines.append(f"| {c} | {m['wall']:.1f} | {m['user']:.1f} | {m['sys']:.1f} | "
                     f"{m['user'] + m['sys']:.1f} | {m['faults']:,.0f} | "
                     f"{'/'.join(sorted(losses[c]))} |")
    d, t = med["default"], med["tuned"]
    lines += [
        "",
        f"default / tuned: wall {d['wall'] / t['wall']:.2f}x, CPU seconds "
        f"{(d['user'] + d['sys']) / (t['user'] + t['sys']):.2f}x, page faults "
        f"{d['faults'] / max(t['faults'], 1):.1f}x; final losses "
        f"{'identical' if same else 'DIFFERENT'}.",
    ]
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")
    if not same:
        raise SystemExit("the final losses differ: the comparison is not of the same run")


if __name__ == "__main__":
    main()
