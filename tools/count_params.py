"""Parameter counts of every model variant, from jax.eval_shape (no memory, no compilation).

Usage:
    python tools/count_params.py [--out FILE]

Prints a Markdown table (and writes it to FILE with --out).
"""

from __future__ import annotations

import argparse
import pathlib

from diffax.models import MLP, MLP_VARIANTS, UNET_VARIANTS, UNet, count_params


def rows() -> list[tuple[str, str, str, int]]:
    out = []
    for name, cfg in UNET_VARIANTS.items():
        shape = "x".join(map(str, cfg.input_shape))
        out.append(("UNet", name, shape, count_params(UNet(cfg))))
    for name, cfg in MLP_VARIANTS.items():
        out.append(("MLP", name, str(cfg.dim), count_params(MLP(cfg))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, help="also write the table to this file")
    args = parser.parse_args()
    lines = ["| model | variant | input | parameters |", "|---|---|---|---:|"]
    lines += [f"| {m} | {v} | {s} | {n:,} |" for m, v, s, n in rows()]
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
