"""Every benchmark's figures are in a committed file (issue #22, item 1): each
``tools/bench_*.py`` has an output file ``bench_<name>*.md`` in the repository that the README,
an experiment's README or the module quoting the figures names, and every ``--out PATH`` a
README quotes for a benchmark exists (a table quoted from a run whose output was not kept cannot
be checked)."""

import pathlib
import re
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BENCHES = sorted(p.stem for p in (ROOT / "tools").glob("bench_*.py"))


def _committed() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:  # not a git checkout (an sdist): fall back to the files on disk
        return [str(p.relative_to(ROOT)) for p in ROOT.rglob("bench_*.md")]
    return out.stdout.split()


def _texts() -> str:
    """The READMEs and the package's sources: where figures are quoted."""
    paths = [ROOT / "README.md", *ROOT.glob("experiments/*/README.md"),
             *ROOT.glob("diffax/**/*.py")]
    return "\n".join(p.read_text() for p in paths)


def test_the_benchmarks_are_found():
    assert {"bench_likelihood", "bench_samplers", "bench_train"} <= set(BENCHES)


@pytest.mark.parametrize("bench", BENCHES)
def test_each_benchmark_has_a_committed_output_that_is_quoted(bench):
    texts = _texts()
    outputs = [f for f in _committed()
               if pathlib.PurePath(f).name.startswith(bench) and f.endswith(".md")]
    assert outputs, f"tools/{bench}.py: no committed bench output file ({bench}*.md)"
    named = [f for f in outputs if pathlib.PurePath(f).name in texts]
    assert named, f"tools/{bench}.py: {outputs} are committed but no README names them"


def test_every_quoted_out_file_exists():
    readmes = [ROOT / "README.md", *ROOT.glob("experiments/*/README.md")]
    missing = []
    for readme in readmes:
        text = readme.read_text()
        for m in re.finditer(r"tools/(bench_\w+)\.py[^`]*?--out\s+([^\s`]+)", text):
            if not (ROOT / m.group(2)).is_file():
                missing.append(f"{readme.relative_to(ROOT)}: {m.group(1)} --out {m.group(2)}")
    assert not missing, missing
