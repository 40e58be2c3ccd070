"""The progress line: one line per update in a log (nothing rewritten with carriage returns,
every metrics update kept), one line rewritten in place on a terminal."""

import doctest

from diffax.train import progress
from diffax.train.progress import Progress


def test_a_log_gets_one_line_per_update(capsys):
    bar = Progress("step", 300, tty=False)
    for step in (100, 200, 300):
        bar.update(step, f"loss {1 / step:.3g}")
    bar.message("Done: 300 steps.")
    bar.close()
    out = capsys.readouterr().out
    assert "\r" not in out
    lines = out.splitlines()
    assert [line.split(" [")[0] for line in lines[:4]] == [
        "step 0/300", "step 100/300", "step 200/300", "step 300/300"]
    assert lines[2].endswith("loss 0.005") and lines[3].startswith(
        "step 300/300 [" + "#" * Progress.width + "]")
    assert lines[4:] == ["Done: 300 steps."]


def test_a_terminal_gets_one_line_rewritten(capsys):
    bar = Progress("sample", 2, tty=True)
    bar.update(1, "NFE 4")
    bar.message("a note")
    bar.update(2)
    bar.close()
    out = capsys.readouterr().out
    # Each state rewrites the line; a message starts a line of its own; close ends the line.
    assert out.count("\r") == 3 and out.endswith("\n")
    assert out.split("\n")[:2] == ["\rsample 0/2 [" + "-" * 24 + "] 0s\rsample 1/2 ["
                                   + "#" * 12 + "-" * 12 + "] 0s NFE 4", "a note"]


def test_disabled_writes_nothing(capsys):
    bar = Progress("step", 10, enabled=False)
    bar.update(5, "loss 1")
    bar.message("hidden")
    bar.close()
    assert capsys.readouterr().out == ""


def test_docstring_example():
    result = doctest.testmod(progress, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result
