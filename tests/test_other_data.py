"""Data beyond MNIST: arrays of your own (any channels, size and classes) through the
Python API, and the IDX folders of other MNIST-shaped sets through --data."""

import json

import numpy as np
import pytest
from test_data import write_folder

from minidarts.__main__ import main
from minidarts.jobs import data
from minidarts.jobs.config import make_config
from minidarts.jobs.search import Search
from minidarts.jobs.train import Train
from minidarts.jobs.train_config import make_train_config


def colour_images(n, seed, classes=3):
    """3-channel 16x16 images whose class is the brightest channel."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    images = rng.random((n, 3, 16, 16)).astype(np.float32) * 0.5
    images[np.arange(n), labels] += 0.5
    return images, labels


def test_a_search_and_a_retraining_on_three_channel_arrays(tmp_path):
    train = data.array_dataset(*colour_images(96, 0), name="colour-train")
    val = data.array_dataset(*colour_images(96, 1), name="colour-val")
    assert train.image_shape == (3, 16, 16) and train.num_classes == 3
    x, y = train.batch(np.arange(8))
    assert x.shape == (8, 3, 16, 16) and x.dtype == np.float32
    # normalised with the statistics computed from the images
    full, _ = train.arrays()
    assert abs(float(full.mean())) < 1e-3 and abs(float(full.std()) - 1) < 1e-2
    cfg = make_config("tiny", {"out": str(tmp_path), "name": "s", "plots": False})
    search = Search(cfg, log=lambda *_: None, datasets=(train, val))
    assert search.model.stem[0].weight.shape[1] == 3  # the stem reads 3 channels
    genotype = search.run()
    logits = search.model(x, search.alphas())
    assert logits.shape == (8, 3)
    resumed = Search.resume(
        str(tmp_path / "s"), epochs=2, log=lambda *_: None, datasets=(train, val)
    )
    resumed.run()
    tcfg = make_train_config(
        "tiny", {"genotype": "unused.json", "out": str(tmp_path), "name": "t", "plots": False}
    )
    run = Train(tcfg, genotype=genotype, log=lambda *_: None, datasets=(train, val))
    acc = run.run()
    assert 0.0 <= acc <= 1.0 and run.model(x).shape == (8, 3)


@pytest.mark.parametrize(
    "images, labels, message",
    [
        (np.zeros((4, 16)), np.zeros(4, int), "must be \\(N, H, W\\) or \\(N, C, H, W\\)"),
        (np.zeros((0, 8, 8)), np.zeros(0, int), "N >= 1"),
        (np.zeros((4, 8, 8), dtype=np.int32), np.zeros(4, int), "uint8 or floating"),
        (np.full((4, 8, 8), np.nan), np.zeros(4, int), "NaN or inf"),
        (np.zeros((4, 8, 8)), np.zeros(5, int), "4 integers \\(one per image\\)"),
        (np.zeros((4, 8, 8)), np.zeros(4), "4 integers"),
        (np.zeros((4, 8, 8)), np.array([0, 1, -1, 2]), "labels must lie in"),
        (np.zeros((4, 8, 8)), np.zeros(4, int), "at least 2 classes"),
    ],
)
def test_arrays_are_checked_when_the_dataset_is_built(images, labels, message):
    with pytest.raises(ValueError, match=message):
        data.array_dataset(images, labels)


def test_a_pair_of_datasets_must_agree():
    a = data.array_dataset(*colour_images(8, 0))
    b = data.array_dataset(np.zeros((8, 16, 16), np.float32), np.arange(8) % 3)
    with pytest.raises(ValueError, match=r"\(3, 16, 16\) in 3 classes"):
        Search(make_config("tiny"), folder="unused", log=lambda *_: None, datasets=(a, b))
    with pytest.raises(ValueError, match="mean needs 3 finite values"):
        a.set_normalisation([0.5, 0.5], [1, 1, 1])
    with pytest.raises(ValueError, match=r"data_std must be in \[0.01, 0.5\]"):
        make_config(None, {"data_std": 0.0})


@pytest.mark.parametrize("mean", [-5.0, -0.13, 1.5])
def test_a_pixel_mean_outside_0_1_is_an_error_in_both_configs(mean, capsys):
    # the pixels are scaled to [0, 1]: -5 (or a sign typed wrong) shifted every input
    # silently before this check
    with pytest.raises(ValueError, match=r"data_mean must be in \[0, 1\]"):
        make_config(None, {"data_mean": mean})
    with pytest.raises(ValueError, match=r"data_mean must be in \[0, 1\]"):
        make_train_config(None, {"data_mean": mean, "genotype": "unused.json"})
    assert main(["search", "--preset", "tiny", "--data-mean", str(mean)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data_mean must be in [0, 1]" in err[0]
    for edge in (0.0, 1.0, 0.1307):
        assert make_config(None, {"data_mean": edge}).data_mean == edge


@pytest.mark.parametrize("std", [30.81, 0.51, 1e-30, 0.009, -1.0])
def test_a_pixel_std_no_data_in_0_1_has_is_an_error(std):
    # 30.81 (a typo for 0.3081) trained on nearly constant inputs; 1e-30 ran a whole
    # epoch and then failed writing its checkpoint
    with pytest.raises(ValueError, match=r"data_std must be in \[0.01, 0.5\]"):
        make_config(None, {"data_std": std})
    with pytest.raises(ValueError, match=r"data_std must be in \[0.01, 0.5\]"):
        make_train_config(None, {"data_std": std, "genotype": "unused.json"})
    for edge in (0.01, 0.5, 0.3081):
        assert make_config(None, {"data_std": edge}).data_std == edge


@pytest.mark.parametrize(
    "name", ["", " ", ".", "..", "runs/..", "./", "../x", "a/../..", "/tmp/x", "/"]
)
def test_a_run_name_that_is_no_folder_of_its_own_is_an_error(name):
    # --name . with --overwrite tried to move --out itself aside; "" fell back silently
    for build, extra in ((make_config, {}), (make_train_config, {"genotype": "g.json"})):
        with pytest.raises(ValueError, match="name must name a folder of its own inside --out"):
            build(None, {"name": name, **extra})
    assert make_config(None, {"name": "runs/a"}).name == "runs/a"
    assert make_config(None, {"name": "a/"}).name == "a"  # --overwrite moves "a", not "a/"


def test_an_mnist_shaped_idx_folder_with_its_own_statistics(tmp_path):
    folder = tmp_path / "fashion"
    write_folder(folder, n_train=64, n_test=16)
    args = ["--preset", "tiny", "--subset", "64", "--no-plots", "--data", str(folder)]
    assert main(["search", *args, "--data-mean", "0.286", "--data-std", "0.353",
                 "--out", str(tmp_path), "--name", "s"]) == 0  # fmt: skip
    config = json.loads((tmp_path / "s" / "config.json").read_text())
    assert (config["data_mean"], config["data_std"]) == (0.286, 0.353)
    train, _ = data.search_split(0, subset=64, root=str(folder))
    train.set_normalisation(0.286, 0.353)
    x, _ = train.batch(np.arange(2))
    raw = train.images[:2].astype(np.float32) / 255
    np.testing.assert_allclose(x[:, 0], (raw - 0.286) / 0.353, rtol=1e-5, atol=1e-6)
