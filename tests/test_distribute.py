"""Data-parallel training with tf.distribute (--strategy), on this machine's CPU.

TensorFlow fixes its devices when it starts, so the runs with two replicas happen in fresh processes:
tests/distributed_run.py splits the CPU into two logical devices for MirroredStrategy, and the
multi-worker test starts two processes with their own TF_CONFIG on localhost ports.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bagan_train

REPO = Path(__file__).resolve().parents[1]
RUNNER = REPO / "tests" / "distributed_run.py"
TINY = ["--dataset", "digits", "--image-size", "32", "--batch-size", "16", "--ae-epochs", "0",
        "--steps-per-epoch", "2", "--verbose", "0"]
LOSSES = ("d_loss", "g_loss", "gp", "d_real", "d_fake", "d_wrong")
AIDS = ["--ema-decay", "0.9", "--diffaugment", "translation,cutout,color"]  # their averages and draws per replica


def replica_env(**more):
    """This process's environment for a run with several replicas: TensorFlow's default inter-op
    threads (their collective ops wait on each other), quiet logs."""
    env = {k: v for k, v in os.environ.items() if k != "TF_NUM_INTEROP_THREADS"}
    return dict(env, TF_CPP_MIN_LOG_LEVEL="2", **more)


def start(args, env=None):
    """A fresh Python process running `args` (with `env` added to its environment), its output captured."""
    return subprocess.Popen([sys.executable, *map(str, args)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=replica_env(PYTHONPATH=str(REPO), **(env or {})))


def finish(process, timeout=600):
    """The stdout of a process started by `start`, which must succeed."""
    stdout, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, stdout[-3000:] + stderr[-3000:]
    return stdout


def run(args):
    return finish(start(args))


def keras_weights(path):
    import keras
    return [np.asarray(w) for w in keras.models.load_model(path).get_weights()]


def gan_rows(run_dir):
    with open(Path(run_dir) / "history.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if r["phase"] == "gan"]


def test_two_mirrored_replicas_reach_the_losses_of_one_device():
    """Three SGD steps (plain SGD: Adam would hide a wrong gradient scale) from the same weights.

    The control run forgets to divide each replica's loss by the replica count: its gradients
    are twice too large, and the test must see that.
    """
    result = json.loads(run([RUNNER, "equivalence"]).strip().splitlines()[-1])
    assert result["mirrored_replicas"] == result["unscaled_replicas"] == 2
    for key in LOSSES:
        np.testing.assert_allclose(result["mirrored"][key], result["single"][key], rtol=1e-5, atol=1e-6,
                                   err_msg=key)
    assert result["mirrored_weight_difference"] < 1e-4  # float round-off (6e-8 to 2e-5 seen)
    # The wrong scaling is three orders of magnitude outside that tolerance.
    assert result["unscaled_weight_difference"] > 1e-2
    assert max(abs(a - b) for key in ("d_real", "d_fake", "g_loss")
               for a, b in zip(result["unscaled"][key], result["single"][key])) > 1e-3


@pytest.fixture(scope="module")
def mirrored_runs(tmp_path_factory):
    """On two replicas: 2 epochs straight, and 1 epoch resumed to 2, evaluated every epoch; on one
    device: 2 epochs, not evaluated; all with the generator's moving average and DiffAugment
    (the few-images aids). The two-replica processes run beside each other and beside the one-device run of
    this process."""
    root = tmp_path_factory.mktemp("mirrored")
    straight, resumed, single = root / "straight", root / "resumed", root / "single"
    mirrored = [RUNNER, "cli", *TINY, *AIDS, "--strategy", "mirrored", "--eval-every", "1"]
    cache = dict(XDG_CACHE_HOME=str(root / "cache"))  # empty: the two runs need the same judge at once
    processes = [start([*mirrored, "--epochs", "2", "--out", straight], cache),
                 start([*mirrored, "--epochs", "1", "--out", resumed], cache)]
    try:
        assert bagan_train.main([*TINY, *AIDS, "--epochs", "2", "--out", str(single)]) == 0
        finish(processes[1])
        processes.append(start([RUNNER, "cli", "--resume", resumed, "--epochs", "2", "--strategy", "mirrored",
                                "--verbose", "0"]))
        for process in processes[::2]:
            finish(process)
    finally:
        for process in processes:
            process.kill()
    return straight, resumed, single


def test_mirrored_cli_run_writes_a_complete_run_folder(mirrored_runs):
    straight, resumed, single = mirrored_runs
    for name in ("config.json", "generator.keras", "generator_raw.keras", "critic.keras", "encoder.keras",
                 "progress.gif", "checkpoints/epoch_002.npz", "samples/epoch_002.png"):
        assert (straight / name).is_file(), name
    # The two runs asked for the same judge at once: one trained it, the other waited and took the
    # judge cache's (evaluators.judge), the same weights.
    metas = [json.loads((run / "eval_classifier.json").read_text()) for run in (straight, resumed)]
    assert sorted(meta["cached"] for meta in metas) == [False, True]
    # Across replicas the evaluation's classifier is made before the GAN's first epoch, not in it
    trained = next(meta["seconds"] for meta in metas if not meta["cached"])
    assert float(gan_rows(straight)[0]["eval_classifier_seconds"]) < trained
    assert metas[0]["check"] == metas[1]["check"]
    weights = [keras_weights(run / "eval_classifier.keras") for run in (straight, resumed)]
    assert all(np.array_equal(a, b) for a, b in zip(*weights))
    # Every epoch evaluated; a best generator kept exactly when an epoch's images were recognised above
    # chance in every class (noise after two steps is not).
    from callbacks import EVAL_PER_CLASS
    from metrics import recognised_above_chance
    rows = gan_rows(straight)
    eligible = [all(recognised_above_chance([float(v) for k, v in row.items() if k.startswith("recognised/")],
                                            EVAL_PER_CLASS, 10)) for row in rows]
    assert all(row["kid_worst"] for row in rows)
    assert (straight / "generator_best.keras").is_file() == any(eligible)
    # The same seed and data on one device: the same losses up to float round-off, which Adam's
    # normalised steps carry along (1e-4 relative seen after 20 critic steps).
    for a, b in zip(gan_rows(straight), gan_rows(single)):
        for key in LOSSES:
            assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-3, abs=1e-6), key


def test_resume_under_a_strategy_equals_the_uninterrupted_run(mirrored_runs):
    straight, resumed, _ = mirrored_runs
    assert [r["epoch"] for r in gan_rows(resumed)] == ["1", "2"]
    checkpoint = Path("checkpoints") / "epoch_002.npz"
    with np.load(straight / checkpoint) as a, np.load(resumed / checkpoint) as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-5, err_msg=key)
    import keras
    averaged = [keras.models.load_model(r / "generator.keras").get_weights() for r in (straight, resumed)]
    raw = keras.models.load_model(straight / "generator_raw.keras").get_weights()
    for x, y in zip(*averaged):  # the moving average continues exactly from the checkpoint
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-5)
    assert max(np.abs(x - r).max() for x, r in zip(averaged[0], raw)) > 1e-4


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_worker_processes_train_and_only_the_chief_writes(tmp_path):
    out = tmp_path / "run"
    workers = [f"localhost:{free_port()}", f"localhost:{free_port()}"]
    processes = []
    for index in range(2):
        config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        processes.append(subprocess.Popen(
            [sys.executable, "bagan_train.py", *TINY, "--epochs", "1", "--strategy", "multiworker", "--out", str(out)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=replica_env(TF_CONFIG=config)))
    outputs = []
    try:
        for p in processes:
            outputs.append(p.communicate(timeout=600)[0])
    finally:
        for p in processes:
            p.kill()
    assert [p.returncode for p in processes] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    assert "(2 replicas" in outputs[0] and "a worker: writes nothing" not in outputs[0]
    assert "(a worker: writes nothing)" in outputs[1]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch_001.npz"]
    assert [r["epoch"] for r in gan_rows(out)] == ["1"]
    assert not [p for p in out.rglob("*") if p.name.startswith(".tmp-")]


def test_multiworker_without_tf_config_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert bagan_train.main([*TINY, "--epochs", "1", "--strategy", "multiworker", "--out", str(tmp_path / "r")]) == 2
    assert "TF_CONFIG" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
