"""Prints the CLD-vs-VP digits table from experiments/cld/digits_equal_steps.sh's output dir."""

import json
import os
import sys

RUNS = [("CLD, SSCS", "digits_cld", "sscs50"), ("CLD, SSCS", "digits_cld", "sscs100"),
        ("VP, Heun (PF-ODE)", "digits_vp_continuous", "heun25"),
        ("VP, Heun (PF-ODE)", "digits_vp_continuous", "heun50"),
        ("VP, Euler-Maruyama", "digits_vp_continuous", "em100")]


def main(out):
    rows = ["| model, sampler | NFE | FD in PCA features | sliced W2 | untrained FD / SW2 |",
            "|---|---|---|---|---|"]
    floor = None
    for name, config, tag in RUNS:
        path = os.path.join(out, f"{config}.{tag}.metrics.json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            m = json.load(f)
        floor = m["reference"]["train_vs_held_out"]
        u = m["reference"]["untrained_model"] or {}
        rows.append(f"| {name} | {m['samples']['nfe']} | {m['fd_pca']:.3f} | "
                    f"{m['sliced_wasserstein']:.4f} | {u.get('fd_pca', float('nan')):.3g} / "
                    f"{u.get('sliced_wasserstein', float('nan')):.3g} |")
        step = m["step"]
    if floor is not None:
        rows.insert(0, f"Step {step}; {m['samples']['num']} samples vs the 300 test "
                       f"digits; training digits "
                       f"(the floor): FD {floor['fd_pca']:.3f}, sliced W2 "
                       f"{floor['sliced_wasserstein']:.4f}.\n")
    for label, config in (("CLD (bound)", "digits_cld"), ("VP", "digits_vp_continuous")):
        path = os.path.join(out, f"{config}.likelihood.json")
        if os.path.exists(path):
            with open(path) as f:
                r = json.load(f)
            rows.append(f"\nNLL {label}: {r['value']:.3f} +- {r['stderr']:.3f} {r['unit']} "
                        f"({r['num_examples']} test digits, Hutchinson, rtol = atol = 1e-3, "
                        f"mean NFE {r['nfe']:.0f})")
    print("\n".join(rows))


if __name__ == "__main__":
    main(sys.argv[1])
