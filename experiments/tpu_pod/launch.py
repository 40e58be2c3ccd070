"""Run ``diffax train`` on every worker of an existing Cloud TPU VM slice.

    python experiments/tpu_pod/launch.py --tpu my-v4-32 --zone us-central2-b \\
        --accelerator_type v4-32 --config configs/cifar10_ddpmpp_vp.py \\
        --workdir gs://my-bucket/cifar10_ddpmpp_vp -- --config.train.batch_size=512

What it does, in order (``--dry-run`` prints every command instead of running it):

1. **Package** the checkout it runs from: ``git archive HEAD`` into a tarball (so every worker
   runs exactly the committed code; uncommitted changes are refused unless
   ``--allow_dirty``).
2. **Copy** the tarball to each worker (``gcloud compute tpus tpu-vm scp --worker=i``).
3. **Install** on each worker: ``jax[tpu]`` pinned to the version given by ``--jax_version``
   (default: the version installed here, so the program that ran on CPU is the one that runs
   on the TPU), then diffax from the tarball, unpacked in ``~/diffax`` (the configs live there).
4. **Train**: the same ``diffax train --distributed ...`` on every worker at once, one
   ``gcloud compute tpus tpu-vm ssh --worker=i`` per worker, each output line prefixed with its
   worker. ``--distributed`` makes diffax call ``jax.distributed.initialize()``, which finds
   the slice's coordinator and the worker's index from the TPU VM metadata. Everything after
   ``--`` is passed to ``diffax train`` unchanged (config overrides). If any worker fails, the
   launcher stops the others and exits with its code.

The workdir must be on storage every worker sees (``gs://...``): orbax writes one checkpoint
from all workers together. Steps 2-3 can be skipped with ``--skip_install`` once a slice has
the code.

The number of workers follows from the accelerator type: TPU v2, v3, v4 and v5p name their
size in TensorCores, 8 per worker (v4-32: 16 chips on 4 workers); v5e (``v5litepod``) and v6e
name it in chips, up to 8 on one worker and 4 per worker in larger slices (v5litepod-16: 4
workers). ``--num_workers`` overrides it.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_TARBALL = "diffax-src.tar.gz"
_LIBTPU_RELEASES = "https://storage.googleapis.com/jax-releases/libtpu_releases.html"


class LaunchError(Exception):
    """A problem with the launcher's arguments, reported before anything runs."""


def num_workers(accelerator_type: str) -> int:
    """Workers (hosts) of a Cloud TPU slice from its accelerator type, e.g. ``v4-32`` -> 4.

    Example:
      >>> num_workers("v4-32"), num_workers("v3-8"), num_workers("v5litepod-16")
      (4, 1, 4)
    """
    m = re.fullmatch(r"(v2|v3|v4|v5p|v5litepod|v5e|v6e)-(\d+)", accelerator_type)
    if not m:
        raise LaunchError(f"--accelerator_type: expected e.g. v4-32, v5p-64, v5litepod-16, "
                          f"v6e-16; got {accelerator_type!r} (or give --num_workers).")
    family, size = m.group(1), int(m.group(2))
    if family in ("v2", "v3", "v4", "v5p"):  # size counts TensorCores: 8 per worker
        if size % 8:
            raise LaunchError(f"--accelerator_type {accelerator_type}: the size of a {family} "
                              "slice is a multiple of 8 TensorCores.")
        return size // 8
    if size <= 8:  # v5e / v6e count chips: up to 8 chips on a single worker
        return 1
    if size % 4:
        raise LaunchError(f"--accelerator_type {accelerator_type}: a multi-worker {family} "
                          "slice has a multiple of 4 chips.")
    return size // 4


def _parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    argv = list(argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Arguments after `--` go to `diffax train` (e.g. --config.train.batch_size=512).")
    p.add_argument("--tpu", required=True, help="name of the TPU VM slice")
    p.add_argument("--zone", required=True)
    p.add_argument("--project", default=None, help="GCP project (default: gcloud's)")
    p.add_argument("--accelerator_type", default=None, help="e.g. v4-32 (sets the workers)")
    p.add_argument("--num_workers", type=int, default=None)
    p.add_argument("--config", required=True,
                   help="config path relative to the repository, e.g. configs/x.py[:variant]")
    p.add_argument("--workdir", required=True, help="shared run directory, gs://...")
    p.add_argument("--jax_version", default=None,
                   help="jax[tpu] version to install (default: the one installed here)")
    p.add_argument("--skip_install", action="store_true", help="reuse the installed code")
    p.add_argument("--allow_dirty", action="store_true",
                   help="package HEAD even if the work tree has uncommitted changes")
    p.add_argument("--allow_local_workdir", action="store_true",
                   help="accept a workdir that is not gs:// (it must still be shared)")
    p.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                   help="print every command instead of running it")
    return p.parse_args(argv), extra


def _check(args: argparse.Namespace, extra: list[str]) -> int:
    workers = args.num_workers
    if workers is None:
        if args.accelerator_type is None:
            raise LaunchError("give --accelerator_type (e.g. v4-32) or --num_workers.")
        workers = num_workers(args.accelerator_type)
    elif workers < 1:
        raise LaunchError(f"--num_workers must be positive, got {workers}.")
    if not args.workdir.startswith("gs://") and not args.allow_local_workdir:
        raise LaunchError(f"--workdir {args.workdir!r}: every worker writes the same checkpoint, "
                          "so the workdir must be shared storage (gs://...); pass "
                          "--allow_local_workdir for a shared file system.")
    config_file = args.config.split(":", 1)[0]
    if os.path.isabs(config_file) or not os.path.isfile(os.path.join(_REPO, config_file)):
        raise LaunchError(f"--config {args.config!r}: expected a config file relative to the "
                          f"repository ({_REPO}), e.g. configs/cifar10_ddpmpp_vp.py.")
    for a in extra:
        if not a.startswith("--config."):
            raise LaunchError(f"after `--` only config overrides (--config.KEY=VALUE) are "
                              f"passed to diffax train; got {a!r}.")
    return workers


def _jax_version(args: argparse.Namespace) -> str:
    if args.jax_version:
        return args.jax_version
    import importlib.metadata

    return importlib.metadata.version("jax")


def commands(args: argparse.Namespace, extra: list[str], workers: int, tarball: str
             ) -> list[tuple[str, list[list[str]]]]:
    """The phases and, per phase, one command per worker (or one local command)."""
    where = ["--zone", args.zone] + ([] if args.project is None else ["--project", args.project])
    phases: list[tuple[str, list[list[str]]]] = [
        ("package", [["git", "-C", _REPO, "archive", "--format=tar.gz", "--prefix=diffax/",
                      "-o", tarball, "HEAD"]]),
    ]
    ssh = lambda i, cmd: ["gcloud", "compute", "tpus", "tpu-vm", "ssh", args.tpu,  # noqa: E731
                          *where, f"--worker={i}", f"--command={cmd}"]
    if not args.skip_install:
        phases.append(("copy", [["gcloud", "compute", "tpus", "tpu-vm", "scp", tarball,
                                 f"{args.tpu}:~/{_TARBALL}", *where, f"--worker={i}"]
                                for i in range(workers)]))
        install = " && ".join([
            f"rm -rf ~/diffax && tar -xzf ~/{_TARBALL} -C ~",
            f"python3 -m pip install -q -U {shlex.quote(f'jax[tpu]=={_jax_version(args)}')} "
            f"-f {_LIBTPU_RELEASES}",
            "python3 -m pip install -q ~/diffax",
        ])
        phases.append(("install", [ssh(i, install) for i in range(workers)]))
    train = " ".join(["cd ~/diffax &&", "python3 -m diffax.cli train", "--distributed",
                      shlex.quote(f"--config={args.config}"),
                      shlex.quote(f"--workdir={args.workdir}"), *map(shlex.quote, extra)])
    phases.append(("train", [ssh(i, train) for i in range(workers)]))
    return phases


def _run_parallel(cmds: list[list[str]]) -> int:
    """Runs the commands together, prefixing output with the worker; stops all on a failure."""
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for c in cmds]
    failed: list[int] = []

    def pump(i: int, proc: subprocess.Popen) -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            sys.stdout.write(f"[worker {i}] {line}")
        if proc.wait() != 0 and not failed:
            failed.append(i)
            for other in procs:  # fail fast: one worker down stops the job
                if other.poll() is None:
                    other.send_signal(signal.SIGTERM)

    threads = [threading.Thread(target=pump, args=(i, p)) for i, p in enumerate(procs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        code = procs[failed[0]].returncode
        print(f"worker {failed[0]} failed with exit code {code}", file=sys.stderr)
        return code or 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args, extra = _parse(sys.argv[1:] if argv is None else argv)
    try:
        workers = _check(args, extra)
        if not args.dry_run and not args.allow_dirty:
            dirty = subprocess.run(["git", "-C", _REPO, "status", "--porcelain",
                                    "--untracked-files=no"], capture_output=True, text=True,
                                   check=True).stdout.strip()
            if dirty:
                raise LaunchError("the work tree has uncommitted changes, which the workers "
                                  "would not get (only HEAD is packaged); commit them or pass "
                                  "--allow_dirty.")
    except LaunchError as e:
        print(f"launch.py: error: {e}", file=sys.stderr)
        return 2
    tarball = os.path.join("/tmp", _TARBALL)
    phases = commands(args, extra, workers, tarball)
    if args.dry_run:
        print(f"# {args.tpu}: {workers} worker{'s' if workers > 1 else ''}")
        for name, cmds in phases:
            print(f"# {name}" + (" (all workers at once)" if len(cmds) > 1 else ""))
            for c in cmds:
                print(shlex.join(c))
        return 0
    for name, cmds in phases:
        print(f"== {name}", file=sys.stderr, flush=True)
        code = _run_parallel(cmds) if len(cmds) > 1 else subprocess.call(cmds[0])
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
