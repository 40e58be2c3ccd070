"""diffax's progress line against tqdm, in a log file and on a terminal (a pseudo-terminal).

Writes what the training loop writes for a run of 2000 steps logging metrics every 100 steps
(20 updates, 50 ms apart), once through :class:`diffax.train.progress.Progress` and once
through tqdm (installed with tensorflow-datasets), and prints for each destination the bytes,
newlines, carriage returns and the lines ``grep loss`` finds: a log file must keep every
metrics line (one per update), a terminal shows one line rewritten in place.

    python tools/bench_progress.py [--out FILE]
"""

from __future__ import annotations

import argparse
import io
import os
import pty
import sys
import time

STEPS, LOG_EVERY, PAUSE = 2000, 100, 0.05


def _write(lib: str, out: io.TextIOBase) -> None:
    if lib == "tqdm":
        from tqdm import tqdm

        bar = tqdm(total=STEPS, desc="step", file=out)
        for step in range(LOG_EVERY, STEPS + 1, LOG_EVERY):
            time.sleep(PAUSE)
            bar.set_postfix_str(f"loss {1.0 / step:.4g}", refresh=False)
            bar.update(LOG_EVERY)
        bar.close()
        out.write("Done: 2000 steps.\n")
    else:
        from diffax.train.progress import Progress

        stdout, sys.stdout = sys.stdout, out
        try:
            bar = Progress("step", STEPS)
            for step in range(LOG_EVERY, STEPS + 1, LOG_EVERY):
                time.sleep(PAUSE)
                bar.update(step, f"loss {1.0 / step:.4g}")
            bar.message("Done: 2000 steps.")
            bar.close()
        finally:
            sys.stdout = stdout
    out.flush()


def _to_file(lib: str) -> bytes:
    buf = io.BytesIO()
    out = io.TextIOWrapper(buf, encoding="utf-8", write_through=True)
    _write(lib, out)
    return buf.getvalue()


def _to_terminal(lib: str) -> bytes:
    pid, fd = pty.fork()
    if pid == 0:  # the child writes to the terminal
        _write(lib, os.fdopen(1, "w"))
        os._exit(0)
    data = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    os.waitpid(pid, 0)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args()
    rows = ["| writer | destination | bytes | newlines | CR | `grep loss` lines |",
            "|---|---|---|---|---|---|"]
    for lib in ("diffax", "tqdm"):
        for where, fn in (("log file", _to_file), ("terminal", _to_terminal)):
            data = fn(lib)
            lines = data.split(b"\n")
            grep = sum(1 for line in lines if b"loss" in line)
            crs = data.count(b"\r")
            rows.append(f"| {lib} | {where} | {len(data)} | {len(lines) - 1} | {crs} | {grep} |")
    table = "\n".join(rows)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
