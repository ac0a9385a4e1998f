"""The training script end to end on tiny runs (bagan_train.main), its settings (TrainConfig) and
generate.py."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image, ImageSequence

import generate
from bagan_train import TrainConfig, auto_precision, main
from callbacks import CAPTION_HEIGHT, GRID_ROWS, assemble_gif
from datasets import load_dataset, to_uint8
from runs import UsageError, save_png

REPO = Path(__file__).resolve().parents[1]
CLASSES = [str(c) for c in range(10)]
TILE, PAD = 32, 2
SHOWN = 2 * TILE  # the pictures draw 32-pixel digits twice as large (callbacks.grid_scale)
GAN_KEYS = ["d_loss", "g_loss", "gp", "d_real", "d_fake", "d_wrong"]
SMOKE = ["--dataset", "digits", "--image-size", "32", "--batch-size", "16", "--epochs", "2", "--ae-epochs", "1",
         "--steps-per-epoch", "2", "--verbose", "0"]
# Resume and NaN runs: no autoencoder training, 2 generator steps per epoch.
TINY = ["--dataset", "digits", "--image-size", "32", "--batch-size", "8", "--ae-epochs", "0",
        "--steps-per-epoch", "2", "--verbose", "0"]
MODELS = ["generator", "critic", "encoder", "embedding", "decoder"]


def history(run):
    with open(run / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def gan_rows(run):
    return [r for r in history(run) if r["phase"] == "gan"]


def grid_size(rows, cols, tile=SHOWN):
    """(width, height) of callbacks.image_grid for rows x cols tiles of `tile` pixels."""
    return cols * (tile + PAD) + PAD, rows * (tile + PAD) + PAD


def snapshot(folder):
    """Relative path -> bytes of every file under folder."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def digits32():
    return load_dataset("digits", image_size=32)


# ---------------------------------------------------------------- end-to-end smoke run


def test_a_grid_of_few_small_classes_is_drawn_large_enough():
    """4 classes of 32x32 images used to make a 170x460 picture: the images are enlarged (nearest
    neighbour, one integer factor) to a picture about 480 pixels wide, images of 64 pixels at
    least, labels kept; a grid that is large already stays as it is."""
    from callbacks import grid_scale, labelled_grid
    rng = np.random.default_rng(0)
    rows = [rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8) for _ in range(1 + GRID_ROWS)]
    names = ["red blood cell", "ring", "schizont", "trophozoite"]
    picture = labelled_grid(rows, ["real"] + [f"z{r}" for r in range(1, GRID_ROWS + 1)], names)
    assert picture.shape[1] >= 480 and picture.shape[0] <= 2000, picture.shape
    k = grid_scale(rows)
    shown = 32 * k
    assert shown >= 64
    width, height = grid_size(1 + GRID_ROWS, 4, shown)
    top, left = picture.shape[0] - height, picture.shape[1] - width  # the grid: the bottom-right corner
    assert top > 0 and left > 0
    assert (picture[:top, left:] < 128).any() and (picture[top:, :left] < 128).any(), "labels lost"
    for r, c in ((0, 0), (GRID_ROWS, 3)):
        y, x = top + PAD + r * (shown + PAD), left + PAD + c * (shown + PAD)
        np.testing.assert_array_equal(picture[y:y + shown, x:x + shown], rows[r][c].repeat(k, axis=0).repeat(k, axis=1))
    large = [rng.integers(0, 256, (10, 64, 64, 1), dtype=np.uint8) for _ in range(1 + GRID_ROWS)]
    assert labelled_grid(large).shape[:2] == grid_size(1 + GRID_ROWS, 10, 64)[::-1]


def test_smoke_run_exits_zero_and_writes_config_and_history(smoke_run):
    run = smoke_run
    config = json.loads((run / "config.json").read_text())
    assert config["class_names"] == CLASSES
    assert (config["model"], config["variant"], config["autoencoder"]) == ("bagan_gp", "v3", "supervised")
    assert (config["real_fraction"], config["alternate"]) == (None, None)  # AC-GAN's options
    assert {"python", "tensorflow", "keras", "numpy"} <= set(config["versions"])
    assert config["versions"]["keras"] == keras.__version__
    assert (config["image_size"], config["batch_size"], config["epochs"], config["ae_epochs"]) == (32, 16, 2, 1)
    assert config["channels"] == 1
    assert config["networks"] == "original"  # the default since its measurement (benchmarks/RESULTS.md)
    # --precision auto (the default) records its choice and why (this machine: no GPU).
    assert config["precision"] == auto_precision()[0] and config["precision_chosen"].startswith("auto: no GPU")

    rows = history(run)
    with open(run / "history.csv") as f:  # the model's loss_parts, in its order
        assert f.readline().strip() == "phase,epoch,loss,val_loss,seconds,d_loss,g_loss,gp,d_real,d_fake,d_wrong"
    assert all(float(r["seconds"]) > 0 for r in rows)
    ae = [r for r in rows if r["phase"] == "autoencoder"]
    assert [int(r["epoch"]) for r in ae] == [1]
    for r in ae:
        assert math.isfinite(float(r["loss"])) and math.isfinite(float(r["val_loss"]))
        assert 0 < float(r["loss"]) < 2 and 0 < float(r["val_loss"]) < 2   # MAE of images in [-1, 1]
    gan = gan_rows(run)
    assert [int(r["epoch"]) for r in gan] == [1, 2]
    for r in gan:
        for key in GAN_KEYS:
            assert math.isfinite(float(r[key])), (key, r)
    assert len(rows) == len(ae) + len(gan)


def test_smoke_run_writes_pictures(smoke_run, digits32):
    run = smoke_run
    for name in ("losses.png", "reconstruction.png"):
        with Image.open(run / name) as im:
            assert im.format == "PNG"
            im.load()
            assert im.width > 50 and im.height > 50
    with Image.open(run / "reconstruction.png") as im:
        # A row of real images and a row of reconstructions per class, labelled at the left.
        picture = np.asarray(im)
    width, height = grid_size(2 * len(CLASSES), 6)
    assert picture.shape[0] == height and picture.shape[1] > width
    assert (picture[:, :picture.shape[1] - width] < 128).any(), "no row labels"

    samples = sorted(p.name for p in (run / "samples").iterdir())
    assert samples == ["epoch_001.png", "epoch_002.png"]
    grids = []
    width, height = grid_size(1 + GRID_ROWS, len(CLASSES))
    for name in samples:
        with Image.open(run / "samples" / name) as im:
            assert im.format == "PNG"
            grids.append(np.asarray(im))
    picture = grids[0]
    top, left = picture.shape[0] - height, picture.shape[1] - width  # the grid: the bottom-right corner
    assert top > 0 and left > 0
    assert (picture[:top, left:] < 128).any(), "no class names above the columns"
    assert (picture[top:, :left] < 128).any(), "no row labels (real, z1 ...)"
    # Eq. 16 layout: the first row holds the first training image of each class.
    for c in range(len(CLASSES)):
        x = left + PAD + c * (SHOWN + PAD)
        first = digits32.x_train[digits32.y_train == c][0][..., 0]
        np.testing.assert_array_equal(picture[top + PAD:top + PAD + SHOWN, x:x + SHOWN],
                                      first.repeat(2, axis=0).repeat(2, axis=1))
    assert not np.array_equal(grids[0], grids[1]), "the generator did not change between epochs"

    with Image.open(run / "progress.gif") as gif:
        frames = [np.asarray(frame.convert("L")) for frame in ImageSequence.Iterator(gif)]
    assert len(frames) == 2, "progress.gif should hold one frame per epoch"
    for frame, grid in zip(frames, grids):
        np.testing.assert_array_equal(frame[CAPTION_HEIGHT:], grid)


def test_smoke_run_writes_loadable_models_tensorboard_and_checkpoints(smoke_run):
    run = smoke_run
    models = {name: keras.models.load_model(run / f"{name}.keras") for name in MODELS}  # safe mode
    assert models["generator"].output_shape == (None, 32, 32, 1)
    assert models["critic"].output_shape == (None, 1)
    assert models["encoder"].output_shape == (None, 128)
    assert models["decoder"].output_shape == (None, 32, 32, 1)
    assert models["embedding"].output_shape == (None, 128)

    events = [p for p in (run / "tensorboard").rglob("events.out.tfevents.*") if p.stat().st_size > 0]
    assert events

    checkpoints = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert checkpoints == ["epoch_001.npz", "epoch_002.npz"]
    with np.load(run / "checkpoints" / "epoch_002.npz") as last:
        assert int(last["epoch"]) == 2
        arrays = [last[k] for k in sorted(k for k in last.files if k.startswith("v"))]
    # The saved generator is the trained one: its variables open the last checkpoint.
    saved = [keras.ops.convert_to_numpy(v) for v in models["generator"].variables]
    assert len(arrays) > len(saved)
    for mine, theirs in zip(saved, arrays):
        np.testing.assert_array_equal(mine, theirs)


# ---------------------------------------------------------------- generate.py


def test_generate_writes_pngs_in_class_folders(smoke_run, tmp_path):
    out = tmp_path / "generated"
    assert generate.main([str(smoke_run), "--per-class", "3", "--to", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == CLASSES
    for c in CLASSES:
        files = sorted((out / c).iterdir())
        assert len(files) == 3 and all(f.suffix == ".png" for f in files)
        for f in files:
            with Image.open(f) as im:
                assert im.format == "PNG" and im.size == (32, 32) and im.mode == "L"


def test_generated_folder_of_five_per_class_loads_with_labels_by_folder(smoke_run, tmp_path):
    """generate.py's output read back with datasets.load_dataset (class folder layout)."""
    out = tmp_path / "generated"
    assert generate.main([str(smoke_run), "--per-class", "5", "--to", str(out), "--seed", "7"]) == 0
    data = load_dataset(str(out), image_size=32)
    assert data.class_names == CLASSES and data.channels == 1
    assert np.add(data.train_counts(), data.test_counts()).tolist() == [5] * 10
    # The images of class folder c are the generator's images of class c, noise from default_rng([seed, c]).
    generator = keras.models.load_model(smoke_run / "generator.keras")
    z = np.random.default_rng([7, 3]).standard_normal((5, 128)).astype("float32")
    expected = to_uint8(generator.predict_on_batch([z, np.full(5, 3, np.int32)]))
    on_disk = np.stack([np.asarray(Image.open(p))[..., None] for p in sorted((out / "3").iterdir())])
    # Up to one grey level apart: the run computes in bfloat16 (--precision auto here), whose rounding
    # differs between one call and another; other noise or another class: about 35 levels apart on average.
    difference = np.abs(on_disk.astype(int) - expected.astype(int))
    assert difference.max() <= 1 and difference.mean() < 0.2


def test_generate_only_some_classes_and_bad_input(smoke_run, tmp_path, capsys):
    out = tmp_path / "generated"
    assert generate.main([str(smoke_run), "--per-class", "2", "--to", str(out), "--classes", "1", "7", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"folder": str(out), "per_class": {"1": 2, "7": 2},
                                                   "generator": "last (epoch 2)"}
    assert sorted(p.name for p in out.iterdir()) == ["1", "7"]
    for argv, needle in (([str(smoke_run), "--classes", "11"], "no class '11'"),
                         ([str(smoke_run), "--per-class", "0"], "--per-class"),
                         ([str(tmp_path / "missing")], "does not exist")):
        assert generate.main(argv + ["--to", str(tmp_path / "other")]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], lines
    assert not (tmp_path / "other").exists()


# ---------------------------------------------------------------- resume


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """Run A: 2 epochs at once. Run B: 1 epoch, then --resume B --epochs 2. Both with the generator's
    class latent (its Gaussians are rebuilt from the run's autoencoder) and a learning rate of
    its own; test_distribute resumes the paper's latent."""
    base = tmp_path_factory.mktemp("resume")
    a, b = base / "A", base / "B"
    flags = ["--latent", "class", "--g-learning-rate", "2e-5"]
    rcs = [main(TINY + flags + ["--epochs", "2", "--out", str(a)]),
           main(TINY + flags + ["--epochs", "1", "--out", str(b)])]
    first_b = {"checkpoints": sorted(p.name for p in (b / "checkpoints").iterdir()), "rows": gan_rows(b)}
    rcs.append(main(["--resume", str(b), "--epochs", "2", "--verbose", "0"]))
    return rcs, a, b, first_b


def test_resume_continues_from_the_checkpoint(resumed):
    rcs, a, b, first_b = resumed
    assert rcs == [0, 0, 0]
    assert first_b["checkpoints"] == ["epoch_001.npz"]
    assert [int(r["epoch"]) for r in first_b["rows"]] == [1]
    assert [int(r["epoch"]) for r in gan_rows(b)] == [1, 2]
    assert sorted(p.name for p in (b / "checkpoints").iterdir()) == ["epoch_001.npz", "epoch_002.npz"]
    assert sorted(p.name for p in (b / "samples").iterdir()) == ["epoch_001.png", "epoch_002.png"]
    config = json.loads((b / "config.json").read_text())
    assert (config["epochs"], config["latent"], config["g_learning_rate"], config["learning_rate"]) == (
        2, "class", 2e-5, 2e-4)


def test_resume_equals_an_uninterrupted_run(resumed):
    rcs, a, b, _ = resumed
    assert rcs == [0, 0, 0]
    for name in ("generator", "critic"):
        wa = keras.models.load_model(a / f"{name}.keras").get_weights()
        wb = keras.models.load_model(b / f"{name}.keras").get_weights()
        assert len(wa) == len(wb)
        for x, y in zip(wa, wb):
            np.testing.assert_allclose(x, y, rtol=0, atol=1e-5, err_msg=name)
    # The whole training state (optimizers and noise generator included) after epoch 2.
    with np.load(a / "checkpoints" / "epoch_002.npz") as ca, np.load(b / "checkpoints" / "epoch_002.npz") as cb:
        assert sorted(ca.files) == sorted(cb.files)
        for k in ca.files:
            np.testing.assert_allclose(ca[k], cb[k], rtol=0, atol=1e-5, err_msg=k)
    ra, rb = gan_rows(a), gan_rows(b)
    assert [r["epoch"] for r in ra] == [r["epoch"] for r in rb] == ["1", "2"]
    for x, y in zip(ra, rb):
        for key in GAN_KEYS:
            assert float(x[key]) == pytest.approx(float(y[key]), rel=1e-5, abs=1e-6), (x["epoch"], key)
    # The same sample grids, hence the same progress.
    for e in ("epoch_001.png", "epoch_002.png"):
        assert np.array_equal(np.asarray(Image.open(a / "samples" / e)), np.asarray(Image.open(b / "samples" / e)))


# ---------------------------------------------------------------- bad flags


BAD_FLAGS = {
    "unknown-dataset": (["--dataset", "no_such_dataset"], "no_such_dataset"),
    "image-size-48": (["--image-size", "48"], "48"),
    "train-ratio-0": (["--train-ratio", "0"], "train ratio"),
}


@pytest.mark.parametrize("case", sorted(BAD_FLAGS))
def test_bad_flags_exit_2_with_one_line_before_any_work(case, tmp_path, capsys):
    flags, needle = BAD_FLAGS[case]
    out = tmp_path / "run"
    assert main(TINY + ["--epochs", "1", "--out", str(out)] + flags) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], err
    assert not out.exists(), "a run folder was created for a bad flag"


def test_resume_of_a_folder_without_config_exits_2(tmp_path, capsys):
    folder = tmp_path / "not_a_run"
    folder.mkdir()
    (folder / "history.csv").write_text("phase,epoch\n")
    before = snapshot(folder)
    assert main(["--resume", str(folder), "--verbose", "0"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "config.json" in lines[0]
    assert snapshot(folder) == before


def test_out_of_an_existing_run_exits_2_and_leaves_it_alone(smoke_run, capsys):
    run = smoke_run
    before = snapshot(run)
    assert main(SMOKE + ["--out", str(run)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "--resume" in lines[0]
    assert snapshot(run) == before


@pytest.mark.parametrize("flags", [["--dataset", "no_such_dataset"], ["--image-size", "48"],
                                   ["--model", "cgan", "--variant", "v2"]],
                         ids=["unknown-dataset", "image-size-48", "variant-of-cgan"])
def test_bad_flags_on_the_real_command_line_print_one_line(flags, tmp_path):
    """The same through `python bagan_train.py`: exit status 2 and a single line on stderr, also
    for a check that needs the model registry, which loads TensorFlow."""
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(REPO / "bagan_train.py"), *flags, "--out", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert proc.stdout == ""
    assert not out.exists()


# ---------------------------------------------------------------- non-finite losses


def test_huge_learning_rate_stops_with_the_step_and_no_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(TINY + ["--epochs", "2", "--learning-rate", "1e30", "--out", str(run)]) == 1
    err = capsys.readouterr().err
    match = re.search(r"non-finite loss .*step (\d+)", err)
    assert match, err
    assert 1 <= int(match.group(1)) <= 4
    assert "no checkpoint" in err
    assert list((run / "checkpoints").iterdir()) == []
    if (run / "history.csv").exists():
        assert gan_rows(run) == []
    assert not (run / "generator.keras").exists()
    assert not list((run / "samples").glob("epoch_*.png"))


def _resume_with_edited_config(smoke_run, tmp_path, key, value):
    copy = tmp_path / "run"
    shutil.copytree(smoke_run, copy)
    config = json.loads((copy / "config.json").read_text())
    config[key] = value
    (copy / "config.json").write_text(json.dumps(config))
    before = snapshot(copy)
    return copy, before, main(["--resume", str(copy), "--epochs", "3", "--verbose", "0"])


def test_nan_on_resume_stops_with_the_step_and_keeps_the_last_good_checkpoint(smoke_run, tmp_path, capsys):
    # A gradient-penalty weight at the edge of float32 makes the first critic step of epoch 3 blow up.
    run, before, rc = _resume_with_edited_config(smoke_run, tmp_path, "gp_weight", 1e38)
    err = capsys.readouterr().err
    assert rc == 1
    # Epochs 1 and 2 had 2 generator steps each: the first step of epoch 3 is step 5.
    assert re.search(r"non-finite loss .* at generator step 5\b", err), err
    assert "epoch_002.npz" in err
    ckpt = Path("checkpoints")
    assert sorted(p.name for p in (run / ckpt).iterdir()) == ["epoch_001.npz", "epoch_002.npz"]
    after = snapshot(run)
    for name in (ckpt / "epoch_001.npz", ckpt / "epoch_002.npz", Path("generator.keras"), Path("critic.keras"),
                 Path("history.csv")):
        assert after[name] == before[name], f"{name} changed after the NaN"
    assert not (run / "samples" / "epoch_003.png").exists()
    assert [int(r["epoch"]) for r in gan_rows(run)] == [1, 2]


def test_resume_uses_the_learning_rate_of_an_edited_config(smoke_run, tmp_path, capsys):
    """Editing config.json's learning_rate before --resume is honoured: 1e38 must blow up epoch 3."""
    run, before, rc = _resume_with_edited_config(smoke_run, tmp_path, "learning_rate", 1e38)
    err = capsys.readouterr().err
    assert rc == 1, "training finished normally: the edited learning rate (1e38) was not used"
    assert re.search(r"non-finite loss .* at generator step \d+", err), err
    assert not (run / "checkpoints" / "epoch_003.npz").exists()


def test_gif_has_one_frame_per_epoch_even_when_two_epochs_look_alike(tmp_path):
    """assemble_gif: one frame per samples/epoch_NNN.png, also when consecutive grids are equal."""
    samples = tmp_path / "samples"
    samples.mkdir()
    grid = np.zeros((2 * TILE, 3 * TILE, 1), np.uint8)
    grid[TILE:] = 200
    for epoch, image in ((1, grid), (2, grid), (3, 255 - grid)):
        save_png(samples / f"epoch_{epoch:03d}.png", image)
    assemble_gif(samples, tmp_path / "progress.gif")
    with Image.open(tmp_path / "progress.gif") as gif:
        frames = [np.asarray(f.convert("L")) for f in ImageSequence.Iterator(gif)]
    assert len(frames) == 3
    np.testing.assert_array_equal(frames[2][CAPTION_HEIGHT:], 255 - grid[..., 0])


def test_gif_of_a_run_whose_grids_changed_size_is_written(tmp_path):
    """A run resumed by a version that labels its grids has grids of two sizes: one canvas for all
    (this failed at the end of training, before the networks were saved)."""
    samples = tmp_path / "samples"
    samples.mkdir()
    old, new = np.full((2 * TILE, 3 * TILE, 1), 90, np.uint8), np.full((3 * TILE, 4 * TILE, 1), 160, np.uint8)
    save_png(samples / "epoch_001.png", old)
    save_png(samples / "epoch_002.png", new)
    assemble_gif(samples, tmp_path / "progress.gif")
    with Image.open(tmp_path / "progress.gif") as gif:
        frames = [np.asarray(f.convert("L")) for f in ImageSequence.Iterator(gif)]
    assert [f.shape for f in frames] == [(3 * TILE + CAPTION_HEIGHT, 4 * TILE)] * 2
    np.testing.assert_array_equal(frames[0][CAPTION_HEIGHT:CAPTION_HEIGHT + 2 * TILE, :3 * TILE], old[..., 0])
    np.testing.assert_array_equal(frames[1][CAPTION_HEIGHT:], new[..., 0])


# ---------------------------------------------------------------- TrainConfig


@pytest.mark.parametrize("settings, expected", [
    ({}, dict(image_size=32, batch_size=64, epochs=40, ae_epochs=30, learning_rate=2e-4, train_ratio=5)),
    ({"imbalanced": True}, dict(image_size=32, batch_size=64, epochs=120, ae_epochs=30)),
    ({"dataset": "fashion_mnist"}, dict(image_size=64, batch_size=128, epochs=15, ae_epochs=10, gp_weight=10.0)),
    ({"dataset": "cifar10", "imbalanced": True}, dict(image_size=64, epochs=30, ae_epochs=10)),
    ({"dataset": "cells"}, dict(image_size=64, batch_size=128, latent_dim=128, epochs=100, ae_epochs=30)),
    ({"dataset": "fashion_mnist", "epochs": 3, "image_size": 32}, dict(image_size=32, epochs=3, ae_epochs=10)),
    ({"model": "cgan"}, dict(train_ratio=1, gp_weight=0.0, variant=None, critic_init=None)),
    ({"model": "bagan", "dataset": "cells"}, dict(train_ratio=1, gp_weight=0.0, epochs=100)),
    ({"model": "wgan_gp", "train_ratio": 3}, dict(train_ratio=3, gp_weight=10.0)),
    ({"variant": "v1"}, dict(variant="v1", critic_init="none", real_fraction=None)),
], ids=["digits", "digits-imbalanced", "fashion", "cifar-imbalanced", "cells", "flags-win", "cgan", "bagan",
        "wgan-ratio", "v1"])
def test_defaults_come_from_the_paper_dataset_and_model_tables(settings, expected):
    config = TrainConfig.create(**settings)
    assert {key: getattr(config, key) for key in expected} == expected


def test_the_autoencoder_follows_model_and_variant():
    kinds = {(m, v): TrainConfig.create(model=m, variant=v).autoencoder
             for m, v in [("bagan_gp", None), ("bagan_gp", "v1"), ("bagan_gp", "v2"), ("bagan", None),
                          ("cdragan", None), ("acgan", None)]}
    assert kinds == {("bagan_gp", None): "supervised", ("bagan_gp", "v1"): "unsupervised",
                     ("bagan_gp", "v2"): "unsupervised", ("bagan", None): "unsupervised",
                     ("cdragan", None): None, ("acgan", None): None}


@pytest.mark.parametrize("settings, needle", [
    (dict(model="no_such_model"), "unknown model 'no_such_model'"),
    (dict(learning_rte=1e-3), "unknown training setting 'learning_rte'"),
    (dict(precision="float16"), "precision must be one of auto, float32, mixed_bfloat16"),
    (dict(keep_checkpoints=0), "keep-checkpoints must be at least 1"),
    (dict(model="cgan", gp_weight=5.0), "--gp-weight does not apply to --model cgan"),
])
def test_bad_settings_name_the_culprit(settings, needle):
    with pytest.raises(UsageError, match=needle):
        TrainConfig.create(**settings)


def test_resume_refuses_a_setting_the_checkpoint_fixes(smoke_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    before = snapshot(run)
    for flags, needle in ((["--batch-size", "8"], "--batch-size cannot change when resuming (the run has 16)"),
                          (["--model", "cgan"], "--model cannot change"),
                          (["--out", str(tmp_path / "elsewhere")], "--out does not apply to --resume")):
        assert main(["--resume", str(run), "--verbose", "0", *flags]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], lines
    assert snapshot(run) == before
    # What the checkpoint does not hold may change, and a flag equal to the run's is no change.
    config = TrainConfig.resume(run, epochs=5, learning_rate=1e-5, batch_size=16, dataset="digits", precision="auto")
    assert (config.epochs, config.learning_rate, config.batch_size) == (5, 1e-5, 16)
    assert config.precision == json.loads((run / "config.json").read_text())["precision"]  # auto: the run's choice


@pytest.mark.parametrize("flags, expected", [
    ("fpu sse2 avx512f avx512_bf16", ("mixed_bfloat16", "avx512_bf16")),
    ("fpu sse2 amx_bf16 amx_tile", ("mixed_bfloat16", "amx_bf16")),
    ("fpu sse2 avx2 avx512f", ("float32", "no bfloat16 instructions")),
])
def test_auto_precision_is_bfloat16_where_the_cpu_computes_it(flags, expected, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    policy, why = auto_precision(cpuinfo)
    assert policy == expected[0] and expected[1] in why
    assert auto_precision(tmp_path / "missing") == ("float32", f"no GPU, and {tmp_path / 'missing'} cannot be read "
                                                               "for the CPU's bfloat16 instructions")



# ---------------------------------------------------------------- a first hour without surprises


def test_gif_frames_show_for_half_a_second(tmp_path):
    """imageio 2.38 reads duration in milliseconds: 0.4 gave frames with no delay at all."""
    samples = tmp_path / "samples"
    samples.mkdir()
    for epoch in (1, 2):
        save_png(samples / f"epoch_{epoch:03d}.png", np.full((TILE, TILE, 1), 40 * epoch, np.uint8))
    assemble_gif(samples, tmp_path / "progress.gif")
    with Image.open(tmp_path / "progress.gif") as gif:
        assert [frame.info.get("duration") for frame in ImageSequence.Iterator(gif)] == [500, 500]


def test_resume_to_fewer_epochs_than_done_is_refused(smoke_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    before = snapshot(run)
    assert main(["--resume", str(run), "--epochs", "1", "--verbose", "0"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--epochs 1" in lines[0] and "2 epochs are done" in lines[0], lines
    assert snapshot(run) == before


def test_resume_of_a_run_whose_networks_were_not_written_writes_them(smoke_run, tmp_path, capsys):
    """Every epoch done but generator.keras missing (a run stopped after its last checkpoint):
    --resume writes the networks from the checkpoint and says so, training nothing."""
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    (run / "generator.keras").unlink()
    rows = len((run / "history.csv").read_text().splitlines())
    assert main(["--resume", str(run), "--verbose", "0"]) == 0
    assert "all 2 epochs are done" in capsys.readouterr().out
    assert (run / "generator.keras").is_file() and len((run / "history.csv").read_text().splitlines()) == rows


def test_ctrl_c_ends_with_the_resume_command(tmp_path):
    """SIGINT during training: exit status 130, no traceback, one line with the saved epoch and --resume,
    on a line of its own after Keras' progress bar (stdout and stderr in one stream, as on a terminal),
    ending with a newline.

    The child gets SIGINT's default action back before it starts: a suite started in the background
    (`make test &`) runs with SIGINT ignored, which children inherit, as a shell intends for background jobs.
    """
    import signal
    import time
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(REPO / "bagan_train.py"), *TINY, "--epochs", "50", "--out", str(out),
                             "--verbose", "1"],  # the progress bar: "\r" updates, its line left open mid-epoch
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=tmp_path,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while not list((out / "checkpoints").glob("epoch_002.npz")) if (out / "checkpoints").is_dir() else True:
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    stderr, _ = proc.communicate(timeout=300)  # a busy machine finishes its step slowly
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    assert stderr.endswith("\n"), stderr[-300:]
    last = stderr.split("\n")[-2]  # split at "\n" only: the bar's "\r" updates stay on its own line
    assert last.startswith("interrupted") and f"--resume {out}" in last and "epoch" in last, stderr[-300:]
    assert sorted(p.name for p in (out / "checkpoints").iterdir())[-1] in last


def test_generate_into_a_folder_with_images_needs_overwrite(smoke_run, tmp_path, capsys):
    out = tmp_path / "generated"
    assert generate.main([str(smoke_run), "--per-class", "3", "--to", str(out)]) == 0
    assert generate.main([str(smoke_run), "--per-class", "2", "--to", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert all(len(list(d.iterdir())) == 3 for d in out.iterdir())
    assert generate.main([str(smoke_run), "--per-class", "2", "--to", str(out), "--overwrite"]) == 0
    assert all(len(list(d.iterdir())) == 2 for d in out.iterdir())  # the class folders replaced, not mixed


@pytest.mark.parametrize("flags, needle", [
    (["--dataset", "fashion_mnist", "--data-dir", "{tmp}/no_such_folder"], "no_such_folder does not exist"),
    (["--dataset", "{tmp}/no/such/folder"], "not found"),
    (["--dataset", "{folder}", "--imbalanced"], "--imbalanced applies to digits, fashion_mnist and cifar10"),
])
def test_dataset_flags_name_what_is_wrong(flags, needle, tmp_path, capsys):
    folder = tmp_path / "classes"
    for name in ("a", "b"):
        (folder / name).mkdir(parents=True)
    flags = [f.format(tmp=tmp_path, folder=folder) for f in flags]
    out = tmp_path / "run"
    assert main(TINY + ["--epochs", "1", "--out", str(out)] + flags) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], lines
    assert not out.exists()


def test_a_16bit_folder_records_its_intensity_rule_and_resize(tmp_path):
    folder = tmp_path / "scans"
    for c, name in enumerate(("healthy", "lesion")):
        (folder / name).mkdir(parents=True)
        for i in range(12):
            values = np.full((8, 12), 400 * c + 10 * i, np.uint16)  # 12-bit values in 16-bit PNGs, not square
            values[2:6, 4:8] = 3000 + 50 * i
            Image.fromarray(values).save(folder / name / f"{i}.png")
    flags = ["--dataset", str(folder), "--image-size", "32", "--batch-size", "16", "--ae-epochs", "0", "--epochs", "1",
             "--steps-per-epoch", "1", "--verbose", "0"]
    assert main(flags + ["--out", str(tmp_path / "range")]) == 0
    config = json.loads((tmp_path / "range" / "config.json").read_text())
    assert config["resize"] == "pad" and config["window"] is None
    assert config["intensity"] == dict(rule="range", low=0.0, high=3550.0, images=24)
    assert main(flags + ["--out", str(tmp_path / "window"), "--window", "0", "2000", "--resize", "crop"]) == 0
    config = json.loads((tmp_path / "window" / "config.json").read_text())
    assert (config["resize"], config["window"], config["intensity"]["rule"]) == ("crop", [0.0, 2000.0], "window")


def test_a_log_file_gets_clean_lines_and_no_tensorflow_chatter(tmp_path):
    """Not a terminal: Keras' one line per epoch (no carriage returns), our estimate of the time left,
    at the end what to do next; no oneDNN or absl notice and no Grappler 'remapper failed' line (the
    remapper stays on); an error still shows. The two runs are processes side by side."""
    out = tmp_path / "run"
    assert TINY[-2:] == ["--verbose", "0"]
    commands = [TINY[:-2] + ["--epochs", "2", "--out", str(out)],
                TINY + ["--epochs", "1", "--learning-rate", "1e30", "--out", str(tmp_path / "nan")]]
    processes = [subprocess.Popen([sys.executable, str(REPO / "bagan_train.py"), *flags], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                                  env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")) for flags in commands]
    (printed, errors), (_, nan_errors) = [p.communicate(timeout=300) for p in processes]
    assert processes[0].returncode == 0, errors[-2000:]
    for chatter in ("remapper failed", "oneDNN", "absl::InitializeLog"):
        assert chatter not in printed + errors, chatter
    assert "\r" not in printed
    lines = printed.splitlines()
    assert [line.split(" in ")[0] for line in lines if line.startswith("[bagan_gp v3] epoch ")] == [
        "[bagan_gp v3] epoch 1/2", "[bagan_gp v3] epoch 2/2"]
    assert "left of the run" in next(line for line in lines if line.startswith("[bagan_gp v3] epoch 1/2"))
    assert lines[-1].startswith("next: look at") and f"python generate.py {out}" in lines[-1]
    assert processes[1].returncode == 1 and "error: a non-finite loss" in nan_errors


def test_losses_show_a_single_epoch_and_whole_epochs():
    from callbacks import losses_figure
    rows = [dict(phase="autoencoder", epoch=1, loss=0.3, val_loss=0.2)] + [
        dict(phase="gan", epoch=e, d_loss=1.0 / e, g_loss=0.5) for e in (1, 2, 3)]
    autoencoder, gan = losses_figure(rows, "BAGAN-GP").axes[:2]
    assert [line.get_marker() for line in autoencoder.lines] == [".", "."]  # one epoch: a dot, not nothing
    ticks = gan.get_xticks()
    assert all(float(t).is_integer() for t in ticks)


def test_the_autoencoders_progress_says_what_follows_and_the_last_phase_estimates_the_run(capsys):
    from callbacks import EpochProgress
    autoencoder, gan = EpochProgress("autoencoder", 3, "40 GAN epochs"), EpochProgress("bagan_gp v3", 2)
    for progress, epochs in ((autoencoder, 3), (gan, 2)):
        for epoch in range(epochs):
            progress.on_epoch_begin(epoch)
            progress.on_epoch_end(epoch)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[autoencoder] epoch 1/3 in 0 s; about 0 s left of the autoencoder, then 40 GAN epochs")
    assert lines[2].endswith("done; then 40 GAN epochs")
    assert lines[3].endswith("about 0 s left of the run") and lines[4].endswith("; done")


def test_the_estimate_leaves_out_the_evaluation_classifiers_training(capsys):
    """It happens once, in the epoch of the first evaluation (eval_classifier_seconds)."""
    from callbacks import EpochProgress
    progress = EpochProgress("bagan_gp v3", 4)
    for epoch, (seconds, logs) in enumerate(((600, {"eval_classifier_seconds": 540.0}), (60, {}), (60, {}))):
        progress.on_epoch_begin(epoch)
        progress.started -= seconds
        progress.on_epoch_end(epoch, logs)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[bagan_gp v3] epoch 1/4 in 600 s (540 s of it the evaluation's classifier, once); ")
    assert lines[0].endswith("about 3 min left of the run")  # 3 x 60 s, not 3 x 600 s
    assert lines[1] == "[bagan_gp v3] epoch 2/4 in 60 s; about 2 min left of the run"
    assert lines[2].endswith("about 60 s left of the run")

def test_a_classifiers_progress_is_an_upper_bound_on_the_stream_it_is_given(capsys):
    """classify.py's trainings stop early and print on stderr (stdout holds the table or the JSON)."""
    import sys
    from callbacks import EpochProgress
    progress = EpochProgress("classify seed 0, oversample", 30, early_stopping=True, stream=sys.stderr)
    for epoch in range(2):
        progress.on_epoch_begin(epoch)
        progress.started -= 60
        progress.on_epoch_end(epoch)
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert lines[0] == ("[classify seed 0, oversample] epoch 1/30 in 60 s; at most about 29 min left of this "
                        "training (early stopping may end it sooner)")
    assert lines[1].startswith("[classify seed 0, oversample] epoch 2/30 in 60 s; at most about 28 min")
