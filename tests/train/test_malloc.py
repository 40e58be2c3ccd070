"""diffax.train.malloc: glibc settings that keep XLA:CPU's per-step scratch memory mapped."""

import os
import subprocess
import sys
import textwrap

import pytest

from diffax.train import malloc
from diffax.train.malloc import configure_malloc

# A child process: one thread allocates, touches and frees a 96 MB buffer 8 times (as XLA:CPU
# does with a step's scratch buffer) and prints the minor page faults of the last 7 rounds.
_CHILD = textwrap.dedent("""
    import importlib.util, resource, sys, threading
    import numpy as np
    spec = importlib.util.spec_from_file_location("malloc", sys.argv[2])  # not all of diffax
    malloc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(malloc)
    print(malloc.configure_malloc(environ={"DIFFAX_MALLOC": sys.argv[1], "JAX_PLATFORMS": "cpu"}))
    out = []
    def work():
        for i in range(8):
            if i == 1:
                start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            a = np.empty(96 << 20, np.uint8)
            a.fill(1)
            del a
        out.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
    t = threading.Thread(target=work)
    t.start(); t.join()
    print(out[0])
""")


def _faults(choice: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", _CHILD, choice, malloc.__file__],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    status, faults = out.splitlines()
    return status, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc: Linux only")
def test_tuned_malloc_reuses_a_freed_large_buffer_instead_of_faulting_it_in_again():
    status, tuned = _faults("tuned")
    assert status == "tuned"
    default_status, default = _faults("default")
    assert default_status == "off: DIFFAX_MALLOC=default"
    # glibc's default maps a fresh 96 MiB on every round: at least 48 faults a round even with
    # 2 MiB transparent huge pages (24 576 with 4 KiB pages); tuned, the freed heap memory is
    # reused and the 7 rounds fault in almost nothing.
    assert default >= 7 * 48, default
    assert tuned < 0.1 * default, (tuned, default)


def test_off_when_asked_or_on_an_accelerator():
    assert configure_malloc(environ={"DIFFAX_MALLOC": "default"}) == "off: DIFFAX_MALLOC=default"
    if sys.platform.startswith("linux"):
        assert configure_malloc(environ={"JAX_PLATFORMS": "cuda,cpu"}) == "off: accelerator"
        assert configure_malloc(environ={"JAX_PLATFORMS": "tpu"}) == "off: accelerator"


def test_a_bad_setting_names_the_variable():
    with pytest.raises(ValueError, match="DIFFAX_MALLOC"):
        configure_malloc(environ={"DIFFAX_MALLOC": "fast"})


def test_the_diffax_command_reports_a_bad_setting_in_one_line(tmp_path):
    # The command as a user runs it (`python -m diffax.cli` is the console script's entry).
    env = dict(os.environ, DIFFAX_MALLOC="fast")
    proc = subprocess.run([sys.executable, "-m", "diffax.cli", "sample", "--workdir",
                           str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, err[-2000:])
    assert "DIFFAX_MALLOC" in err and len(err.splitlines()) == 1, err


def test_main_called_from_python_leaves_the_allocator_alone(monkeypatch, tmp_path):
    # Only the command's entry point tunes malloc (before any jax backend exists); main() in a
    # running process (a notebook, a test worker) does not.
    from diffax import cli

    calls = []
    monkeypatch.setattr(cli, "configure_malloc", lambda **kw: calls.append(kw) or "tuned")
    assert cli.main(["sample", "--workdir", str(tmp_path)]) != 0  # no checkpoint there
    assert calls == []
    monkeypatch.setattr(sys, "argv", ["diffax", "sample", "--workdir", str(tmp_path)])
    with pytest.raises(SystemExit):
        cli.entry_point()
    assert calls == [{}]
