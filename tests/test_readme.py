"""The README's Python examples run as written, so they cannot rot.

Every ```python block of README.md is joined, in order, into one script; the budget
line of the "Python API" search (EPOCHS, IMAGES, C) is set to 1 epoch, 256 images and
C = 2; the script runs in a fresh interpreter from an empty folder outside the
repository, as a user's script would (minidarts found through PYTHONPATH, as after
`pip install -e .`)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUDGET = re.compile(r"^EPOCHS, IMAGES, C = .*$", re.MULTILINE)
TINY = "EPOCHS, IMAGES, C = 1, 256, 2"


def python_blocks(text):
    """The code of every ```python ... ``` block, in order."""
    return re.findall(r"^```python\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)


def test_python_blocks_are_found():
    blocks = python_blocks("a\n```python\nx = 1\n```\nb\n```\nshell\n```\n```python\ny\n```\n")
    assert blocks == ["x = 1\n", "y\n"]


@pytest.mark.slow
def test_readme_python_examples_run(tmp_path):
    blocks = python_blocks((ROOT / "README.md").read_text())
    script = "\n".join(blocks)
    assert len(BUDGET.findall(script)) == 1, "the API example's budget line is missing"
    script = BUDGET.sub(TINY, script)
    (tmp_path / "readme_examples.py").write_text(script)
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    result = subprocess.run(
        [sys.executable, "readme_examples.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "0 val loss, accuracy" in out and "test loss, accuracy" in out
    assert all(f"lambda {lam}:" in out for lam in ("0.01", "0.1", "1", "10"))
    assert "2080" in out  # the registered sep_conv_7x7, counted from the built module
    assert (tmp_path / "genotype.json").exists() and (tmp_path / "search.npz").exists()
