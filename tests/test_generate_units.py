"""generate.py --units data: images written back at the data's original size and in its own intensity
units, from tiny real runs of folders of non-square 16-bit and 8-bit PNG files made here."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

import generate
from bagan_train import main as train
from datasets import _load_images
from runs import Run, UsageError

TINY = ["--image-size", "32", "--batch-size", "16", "--epochs", "1", "--ae-epochs", "0", "--steps-per-epoch", "1",
        "--eval-every", "0", "--verbose", "0"]
WIDTH, HEIGHT = 20, 12  # most of the files; one per folder is 10x10, so the folder has two sizes


def make_folder(root, high_bit):
    """Two classes of 12 files of WIDTH x HEIGHT and one of 10x10: 12-bit values in 16-bit PNG
    (grayscale), or 8-bit RGB."""
    for c, name in enumerate(("healthy", "lesion")):
        (root / name).mkdir(parents=True)
        for i in range(12 + c):
            w, h = (10, 10) if i == 12 else (WIDTH, HEIGHT)
            if high_bit:
                values = np.full((h, w), 400 * c + 10 * i, np.uint16)
                values[2:6, 4:8] = 3000 + 50 * i
                Image.fromarray(values).save(root / name / f"{i}.png")
            else:
                values = np.zeros((h, w, 3), np.uint8)
                values[..., c] = 100 + 10 * i
                values[2:6, 4:8] = 250
                Image.fromarray(values).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{"16-bit": run folder (resize pad), "8-bit": run folder (resize stretch)}, trained once."""
    root = tmp_path_factory.mktemp("units")
    made = {}
    for key, high_bit, resize in (("16-bit", True, "pad"), ("8-bit", False, "stretch")):
        folder = make_folder(root / f"data-{key}", high_bit)
        made[key] = root / f"run-{key}"
        assert train(TINY + ["--dataset", str(folder), "--resize", resize, "--out", str(made[key])]) == 0
    return made


def written(folder):
    files = sorted(folder.rglob("*.png"))
    assert len(files) == 2 * 3, files
    return files


def test_a_16bit_folder_gets_16bit_files_of_its_original_size(runs, tmp_path, capsys):
    config = json.loads((runs["16-bit"] / "config.json").read_text())
    assert config["original_size"] == dict(width=WIDTH, height=HEIGHT, images=24, of=25, sizes=2)
    low, high = config["intensity"]["low"], config["intensity"]["high"]
    capsys.readouterr()
    out = tmp_path / "generated"
    assert generate.main([str(runs["16-bit"]), "--per-class", "3", "--to", str(out), "--units", "data"]) == 0
    for path in written(out):
        with Image.open(path) as im:
            assert (im.size, im.mode) == ((WIDTH, HEIGHT), "I;16"), path
            values = np.asarray(im)
        assert low <= values.min() and values.max() <= high, (values.min(), values.max())
    err = capsys.readouterr().err
    assert err.count("data units:") == 1
    said = next(line for line in err.splitlines() if line.startswith("data units:"))
    assert f"{WIDTH}x{HEIGHT} pixels" in said and "16-bit" in said and "'range' inverted" in said
    assert "2 sizes" in said and "24 of 25" in said and "padding undone" in said


def test_an_8bit_folder_gets_8bit_files_of_its_original_size(runs, tmp_path, capsys):
    out = tmp_path / "generated"
    assert generate.main([str(runs["8-bit"]), "--per-class", "3", "--to", str(out), "--units", "data", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["units"] == "data"
    for path in written(out):
        with Image.open(path) as im:
            assert (im.size, im.mode) == ((WIDTH, HEIGHT), "RGB"), path
    model = tmp_path / "model"
    assert generate.main([str(runs["8-bit"]), "--per-class", "1", "--to", str(model)]) == 0  # the default: unchanged
    with Image.open(next(model.rglob("*.png"))) as im:
        assert (im.size, im.mode) == ((32, 32), "RGB")


def test_a_run_without_the_record_is_refused_in_one_line(runs, tmp_path, capsys):
    old = tmp_path / "old-run"
    shutil.copytree(runs["16-bit"], old)
    config = json.loads((old / "config.json").read_text())
    del config["original_size"]
    (old / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    out = tmp_path / "generated"
    assert generate.main([str(old), "--per-class", "2", "--to", str(out), "--units", "data"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "original_size" in lines[0] and "--units model" in lines[0], lines
    assert not out.exists()


def test_a_dataset_that_records_no_size_is_refused():
    with pytest.raises(UsageError, match="digits runs do not record"):
        generate.data_units(Run("nowhere", dict(dataset="digits", image_size=32, resize="stretch",
                                                original_size=None, intensity=None, channels=1)))


@pytest.mark.parametrize("resize, shape, words", [
    ("stretch", (12, 20), "resized from 32x32"),
    ("pad", (12, 20), "padding undone: resized to 20x20"),
    ("crop", (12, 12), "cut-off sides cannot be restored"),
])
def test_each_resize_mode_is_undone_as_far_as_it_can_be(resize, shape, words):
    config = dict(dataset="x", image_size=32, resize=resize, channels=1, intensity=dict(rule="dicom window", images=3),
                  original_size=dict(width=20, height=12, images=5, of=5, sizes=1))
    units = generate.data_units(Run("nowhere", config))
    assert words in units["described"] and "DICOM" in units["described"] and units["low"] is None
    images = generate.to_data_units(np.zeros((2, 32, 32, 1), np.float32), units)
    assert [(im.shape, im.dtype) for im in images] == [((*shape, 1), np.uint8)] * 2


def test_pad_is_inverted_at_the_offsets_it_was_padded_at():
    """A 20x12 image padded to 20x20 (rows 4..15), kept at that size: the crop takes those rows back."""
    image = np.full((20, 20), 10.0, np.float32)
    image[4:16] = 200.0
    back = generate.unsquare(image, 20, 12, "pad")
    assert back.shape == (12, 20) and np.all(back == 200.0)


def test_the_intensity_rule_round_trips_within_one_8bit_step(tmp_path):
    rng = np.random.default_rng(0)
    originals = rng.integers(37, 4000, size=(6, 16, 16)).astype(np.uint16)
    paths = []
    for i, values in enumerate(originals):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(values).save(paths[-1])
    x, intensity = _load_images(paths, 16, "stretch")  # the loader's own scaling to 8 bits
    assert intensity["rule"] == "range" and x.shape == (6, 16, 16, 1)
    low, high = intensity["low"], intensity["high"]
    units = dict(width=16, height=16, resize="stretch", low=low, high=high)
    back = generate.to_data_units(x.astype(np.float32) / 127.5 - 1.0, units)
    step = (high - low) / 255
    error = np.abs(np.stack(back)[..., 0].astype(np.float64) - originals)
    assert error.max() <= step, (error.max(), step)
    assert np.stack(back).dtype == np.uint16


def test_select_writes_only_kept_images_and_says_how_many_were_dropped(runs, tmp_path, capsys):
    """--select novel on the 16-bit folder's run: every written file is a kept image, in the data's
    units, and the JSON gives each class's drawn, kept and dropped counts."""
    capsys.readouterr()
    out = tmp_path / "selected"
    assert generate.main([str(runs["16-bit"]), "--per-class", "3", "--to", str(out), "--units", "data",
                          "--select", "novel", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for name, counts in result["selection"].items():
        files = sorted((out / name).glob("*.png"))
        assert len(files) == counts["kept"] == result["per_class"][name] <= 3
        assert counts["drawn"] == counts["kept"] + counts["dropped"] <= 30
        for path in files:
            with Image.open(path) as im:
                assert (im.size, im.mode) == ((WIDTH, HEIGHT), "I;16")
    assert generate.main([str(runs["16-bit"]), "--to", str(tmp_path / "x"), "--select", "confidence",
                          "--select-threshold", "1.5"]) == 2
    assert "between 0 and 1" in capsys.readouterr().err
