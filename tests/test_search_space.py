"""Custom operations from the command line: --ops-module registers them, --primitives
chooses the candidates, and the genotype carries them to `train`."""

import json
import os
import subprocess
import sys

import pytest

from minidarts.__main__ import main
from minidarts.darts.operations import build_operation, operation_names
from minidarts.jobs.config import make_config
from minidarts.jobs.search import Search

OPS = """
from minidarts import nn
from minidarts.darts.operations import SepConv, register_operation


def conv1x1(C, stride, affine):
    return nn.Sequential(
        nn.ReLU(), nn.Conv2d(C, C, 1, stride=stride, bias=False), nn.BatchNorm2d(C, affine=affine)
    )


register_operation("test_conv_1x1", conv1x1)
register_operation(
    "test_sep_conv_11x11", lambda C, stride, affine: SepConv(C, C, 11, stride, 5, affine=affine)
)
"""
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPACE = "max_pool_3x3,skip_connect,test_conv_1x1,test_sep_conv_11x11,none"


@pytest.fixture(scope="module")
def ops_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ops") / "my_ops.py"
    path.write_text(OPS)
    return str(path)


def test_search_and_train_with_registered_operations(ops_file, tmp_path, capsys):
    common = ["--preset", "tiny", "--no-plots", "--ops-module", ops_file, "--out", str(tmp_path)]
    assert main(["search", *common, "--primitives", SPACE, "--name", "s"]) == 0
    saved = json.loads((tmp_path / "s" / "genotype.json").read_text())
    assert saved["primitives"] == SPACE.split(",")
    assert {op for op, _ in saved["reduce"]} <= set(SPACE.split(","))
    config = json.loads((tmp_path / "s" / "config.json").read_text())
    assert config["primitives"] == SPACE.split(",") and config["ops_module"] == ops_file
    # the search resumes with its operations (the config imports the module again)
    assert main(["search", "--resume", str(tmp_path / "s"), "--epochs", "2"]) == 0
    # train needs the module too: with it the cell trains, without it a clear error
    genotype = str(tmp_path / "s")
    assert main(["train", *common, "--genotype", genotype, "--name", "t"]) == 0
    # (in a fresh process: this one has the operations registered already)
    proc = subprocess.run(
        [sys.executable, "-m", "minidarts", "train", "--preset", "tiny", "--genotype", genotype],
        capture_output=True,
        text=True,
        cwd=str(tmp_path),
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert proc.returncode == 1
    assert "train --ops-module registers it" in proc.stderr and "Traceback" not in proc.stderr


def test_the_complexity_counts_registered_operations_as_built(ops_file):
    cfg = make_config("tiny", {"ops_module": ops_file, "primitives": SPACE.split(",")})
    search = Search(cfg, folder="unused", log=lambda *_: None)
    table = search.complexity.cost_table["reduce"]
    C = search.model.cells[0].C
    for o, name in enumerate(search.model.primitives):
        for e, stride in ((0, 2), (4, 1)):  # an edge from an input node, one between nodes
            built = sum(p.numel() for p in build_operation(name, C, stride).parameters())
            assert table[e][o] == built, (name, stride)
    assert table[4][search.model.primitives.index("test_sep_conv_11x11")] == 2 * (121 * C + C * C)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"primitives": ["max_pool_3x3", "no_such_op"]}, "not registered operations"),
        ({"primitives": ["skip_connect", "skip_connect", "max_pool_3x3"]}, "repeats a name"),
        ({"primitives": ["skip_connect", "none"]}, "at least two operations"),
        ({"primitives": "skip_connect"}, "must be a list"),
        ({"ops_module": "/no/such/ops.py"}, "does not exist"),
        ({"ops_module": "no_such_module_xyz"}, "cannot import ops_module"),
    ],
)
def test_bad_search_spaces_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        make_config("tiny", overrides)
    assert "no_such_op" not in operation_names()
