"""DDGAN (T = 4) vs a diffusion model at 4 NFE on 8x8 digits and on stacked digits.

Reads trained runs (``diffax train`` workdirs) and prints two tables in one run:

* digits: each model's samples scored like every digits model of the README (``diffax
  eval``'s FD in the whitened PCA features of the training digits and sliced W2 on pixels in
  [0, 1], against the 300 test digits), the *floor* beside them (as many real training
  digits against the same test digits), and the digit score (the Inception score's formula
  with the project's digit classifier, :func:`diffax.evaluation.modes.fit_digit_classifier`,
  fitted on the training digits; the real test digits' score beside it);
* stacked digits (``digits_stacked``, 1000 modes): modes covered (>= 1 sample) and the KL of
  the mode histogram to uniform, each channel read by the same digit classifier; beside them
  the real stacked training images at the same sample count (their true modes) and the
  classifier's accuracy on the real stacked test images (its mode = the true mode), which
  says how far the count can be trusted; FD / sliced W2 against the stacked test split.

Runs are found under ``--runs`` by name: ``digits_ddgan_s<seed>``, ``digits_vp_s<seed>``,
``stacked_ddgan_s<seed>``, ``stacked_vp_s<seed>`` (configs/digits_ddgan.py,
configs/digits_ddgan_vp.py, configs/digits_stacked_ddgan.py, configs/digits_stacked_vp.py).
DDGAN is sampled from its last checkpoint with its 4 generator calls; the diffusion model at
each checkpoint step of ``--vp-steps`` it has, with DDIM (time-uniform grid) and
DPM-Solver++(2M) (log-SNR grid), 4 steps = 4 NFE each. EMA weights throughout. A run whose
samples are not all finite is counted as diverged.

    python tools/bench_ddgan_digits.py --runs /work/runs_ddgan2 --vp-steps 2000,3000 \
        --samples 1000 --stacked-samples 10000 --out tools/bench_ddgan_digits.md
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import sys

import numpy as np

SOLVERS = {  # name -> sample-section overrides (4 steps, 4 NFE)
    "DDIM": {"solver": "ddim", "eta": 0.0, "schedule": "default", "num_steps": 4},
    "DPM-Solver++(2M)": {"solver": "dpm_solver_pp", "order": 2, "schedule": "log_snr",
                         "num_steps": 4},
}


def restore(workdir: str, step: int | None, sample: dict | None = None):
    """The trained run at checkpoint ``step`` with its ``sample`` section overridden."""
    import ml_collections

    from diffax.train import build, evaluate, options

    raw, step = evaluate.stored_config(workdir, step)
    raw["sample"].update(sample or {})
    exp = build.build_experiment(options.parse_config(ml_collections.ConfigDict(raw),
                                                      num_devices=1))
    return evaluate.restore(workdir, exp, step=step)


def steps_of(workdir: str) -> list[int]:
    return sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints"))
                  if d.isdigit())


def draw(trained, num: int) -> tuple[np.ndarray, int]:
    """``num`` samples as pixels in [0, 1] (NaN kept), and the NFE per sample."""
    from diffax.train import evaluate

    x, nfe, _ = evaluate.generate(trained, evaluate._params(trained), num=num, batch_size=500,
                                  seed_tag=2, label="samples")
    finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    out = np.full(x.shape, np.nan)
    out[finite] = evaluate.to_data_range(trained.exp, x[finite])[0].astype(np.float64) / 255.0
    return out, nfe


class Yardstick:
    """Held-out data, PCA features and the digit classifier of one dataset."""

    def __init__(self, name: str, num: int):
        from diffax import data
        from diffax.evaluation import metrics, modes
        from diffax.train.options import EvalOptions

        self.name, self.ev = name, EvalOptions()
        load = lambda ds, split: data.load_split(ds, split=split, value_range=None)
        self.test, self.train = load(name, "test"), load(name, "train")
        self.test_x = self.test["x"].astype(np.float64) / 255.0
        self.train_x = self.train["x"].astype(np.float64) / 255.0
        self.pca = metrics.fit_pca(self.train_x, num_components=self.ev.feature_dim)
        digits = load("digits", "train")
        self.clf = modes.fit_digit_classifier(digits["x"] / 255.0, digits["label"])
        self.num = num

    def scores(self, x: np.ndarray) -> dict:
        """``diffax eval``'s sample scores (its untrained-model reference is not drawn)."""
        from diffax.train import evaluate

        finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        return evaluate._sample_scores(x, x[finite][:2], self.test_x, self.train_x, self.pca,
                                       self.ev, True)


def digit_row(ys: Yardstick, x: np.ndarray) -> dict:
    from diffax.evaluation import modes

    finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    s = ys.scores(x)
    score = modes.digit_score(modes.digit_probabilities(ys.clf, x[finite])) \
        if finite.any() else float("nan")
    return {"finite": int(finite.sum()), "fd": s["fd_pca"], "sw": s["sliced_wasserstein"],
            "score": score, "floor": s["reference"]["train_vs_held_out"]}


def stacked_row(ys: Yardstick, x: np.ndarray) -> dict:
    from diffax.evaluation import modes

    finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    s = ys.scores(x)
    cov = modes.mode_coverage(modes.stacked_modes(ys.clf, x[finite])[0], num_modes=1000) \
        if finite.any() else {"covered": 0, "kl_to_uniform": float("nan")}
    return {"finite": int(finite.sum()), "fd": s["fd_pca"], "sw": s["sliced_wasserstein"],
            "modes": cov["covered"], "kl": cov["kl_to_uniform"],
            "floor": s["reference"]["train_vs_held_out"]}


def runs(root: str, kind: str) -> list[tuple[int, str]]:
    out = []
    for path in glob.glob(os.path.join(root, f"{kind}_s*")):
        m = re.fullmatch(rf"{kind}_s(\d+)", os.path.basename(path))
        if m and os.path.isdir(os.path.join(path, "checkpoints")) and steps_of(path):
            out.append((int(m.group(1)), path))
    return sorted(out)


def evaluate_family(root: str, prefix: str, ys: Yardstick, num: int, vp_steps: list[int],
                    row_fn) -> list[tuple]:
    """Rows (method, NFE, seed, step, metrics) of the DDGAN and diffusion runs of a family."""
    rows = []
    for seed, wd in runs(root, f"{prefix}_ddgan"):
        trained = restore(wd, None)
        x, nfe = draw(trained, num)
        rows.append(("DDGAN T=4", nfe, seed, trained.step, row_fn(ys, x)))
        print(rows[-1], flush=True)
    for seed, wd in runs(root, f"{prefix}_vp"):
        have = steps_of(wd)
        for step in [s for s in vp_steps if s in have]:
            for name, overrides in SOLVERS.items():
                trained = restore(wd, step, overrides)
                x, nfe = draw(trained, num)
                rows.append((f"diffusion, {name}", nfe, seed, step, row_fn(ys, x)))
                print(rows[-1], flush=True)
    return rows


def real_references(digits: Yardstick, stacked: Yardstick | None) -> dict:
    from diffax import data
    from diffax.evaluation import modes

    ref = {"digit_score_test": modes.digit_score(
        modes.digit_probabilities(digits.clf, digits.test_x)),
        "digit_accuracy_test": float(np.mean(
            digits.clf.predict(digits.test_x.reshape(len(digits.test_x), -1))
            == digits.test["label"]))}
    if stacked is not None:
        n = stacked.num
        test = data.stack_digits("test")
        pred = modes.stacked_modes(stacked.clf, test["image"] / 255.0)[0]
        ref["stacked_accuracy_test"] = float(np.mean(pred == test["label"]))
        ref["stacked_num_test"] = len(pred)
        true = modes.mode_coverage(data.stack_digits("train", n)["label"], num_modes=1000)
        ref["stacked_real_modes"], ref["stacked_real_kl"] = true["covered"], true["kl_to_uniform"]
    return ref


def tables(args, digit_rows, stacked_rows, ref) -> str:
    lines = [f"Command: python tools/bench_ddgan_digits.py {' '.join(sys.argv[1:])}", ""]
    lines += [f"Digits (8x8): {args.samples} samples per row against the 300 test digits. "
              f"Digit classifier (logistic regression on the training digits): test accuracy "
              f"{ref['digit_accuracy_test']:.3f}; digit score of the 300 real test digits "
              f"{ref['digit_score_test']:.3f} (max 10).", "",
              "| method | NFE | seed | train steps | finite | digit score | FD (PCA) | "
              "sliced W2 | floor FD / SW2 (real train digits) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for method, nfe, seed, step, r in digit_rows:
        lines.append(f"| {method} | {nfe} | {seed} | {step} | {r['finite']} | "
                     f"{r['score']:.3f} | {r['fd']:.3f} | {r['sw']:.4f} | "
                     f"{r['floor']['fd_pca']:.3f} / {r['floor']['sliced_wasserstein']:.4f} |")
    if "stacked_accuracy_test" in ref:
        lines += ["", f"Stacked digits (3 channels of 8x8, 1000 modes): {args.stacked_samples} "
                  f"samples per row; modes read channel by channel by the same classifier "
                  f"(its accuracy on the {ref['stacked_num_test']} real stacked test images, "
                  f"all three digits right: {ref['stacked_accuracy_test']:.3f}). Real stacked "
                  f"training images, {args.stacked_samples} (true modes): "
                  f"{ref['stacked_real_modes']} modes, KL to uniform "
                  f"{ref['stacked_real_kl']:.4f}. FD / SW2 against the 3000 stacked test "
                  "images.", "",
                  "| method | NFE | seed | train steps | finite | modes (of 1000) | "
                  "KL(modes \\|\\| uniform) | FD (PCA) | sliced W2 | floor FD / SW2 |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for method, nfe, seed, step, r in stacked_rows:
            lines.append(f"| {method} | {nfe} | {seed} | {step} | {r['finite']} | "
                         f"{r['modes']} | {r['kl']:.4f} | {r['fd']:.3f} | {r['sw']:.4f} | "
                         f"{r['floor']['fd_pca']:.3f} / "
                         f"{r['floor']['sliced_wasserstein']:.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", required=True, help="folder holding the run workdirs")
    parser.add_argument("--vp-steps", default="2000", help="diffusion checkpoint steps")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--stacked-samples", type=int, default=10000)
    parser.add_argument("--families", default="digits,stacked",
                        help="which tables: digits, stacked or both")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    if args.samples < 2 or args.stacked_samples < 2:
        parser.error("--samples and --stacked-samples must be >= 2")
    vp_steps = [int(s) for s in args.vp_steps.split(",") if s]
    families = set(args.families.split(","))
    if not families or not families <= {"digits", "stacked"}:
        parser.error("--families: a comma-separated subset of digits,stacked")
    digits = Yardstick("digits", args.samples)
    digit_rows = [] if "digits" not in families else evaluate_family(
        args.runs, "digits", digits, args.samples, vp_steps, digit_row)
    stacked = None
    if "stacked" in families:
        stacked = Yardstick("digits_stacked", args.stacked_samples)
    stacked_rows = [] if stacked is None else evaluate_family(
        args.runs, "stacked", stacked, args.stacked_samples, vp_steps, stacked_row)
    text = tables(args, digit_rows, stacked_rows, real_references(digits, stacked))
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
