"""The notebooks of notebooks/: each runs top to bottom headless on a tiny run, and none is committed
with outputs.

Strip the outputs of notebooks before committing them (this file's own command, no extra package):

    .venv/bin/python tests/test_notebooks.py --strip             # every notebook in notebooks/
    .venv/bin/python tests/test_notebooks.py --strip PATH ...     # these notebooks
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
NAMES = ("progress", "fid_report", "latent_space")
KERNEL = "bagan-gp-tests"
CELL_TIMEOUT = 300
# Small enough for 2 CPU cores: random InceptionV3 weights (the Keras cache is an empty folder),
# 8 images per class for FID, t-SNE of 150 points.
SMALL = {"BAGAN_FID_PER_CLASS": "8", "BAGAN_FID_REAL_PER_CLASS": "8", "BAGAN_FID_FEATURES": "inception",
         "BAGAN_TSNE_POINTS": "150", "BAGAN_TSNE_PERPLEXITY": "10", "BAGAN_FIG11_PER_CLASS": "12"}


# ---------------------------------------------------------------------------------------------
# Outputs stripped in git


def strip_outputs(path: Path) -> bool:
    """Empty outputs and execution counts, drop execution timings, widget state and the Python version the
    notebook last ran with; True if the file changed."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    changed = nb.get("metadata", {}).pop("widgets", None) is not None
    changed |= nb.get("metadata", {}).get("language_info", {}).pop("version", None) is not None
    for cell in nb["cells"]:
        changed |= cell.get("metadata", {}).pop("execution", None) is not None
        if cell["cell_type"] == "code":
            changed |= bool(cell.get("outputs")) or cell.get("execution_count") is not None
            cell["outputs"], cell["execution_count"] = [], None
    if changed:
        path.write_text(json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    return changed


def unstripped(nb: dict) -> list[str]:
    """What of a notebook should not be committed: outputs, execution counts and timings, widget state."""
    problems = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code" and cell.get("outputs"):
            problems.append(f"cell {i} has outputs")
        if cell["cell_type"] == "code" and cell.get("execution_count") is not None:
            problems.append(f"cell {i} has an execution count")
        if "execution" in cell.get("metadata", {}):
            problems.append(f"cell {i} has execution timings")
    if "widgets" in nb.get("metadata", {}):
        problems.append("the metadata holds widget state")
    return problems


def test_the_three_notebooks_are_there():
    assert {p.stem for p in NOTEBOOKS.glob("*.ipynb")} >= set(NAMES)


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs(path):
    problems = unstripped(json.loads(path.read_text(encoding="utf-8")))
    assert not problems, (f"{path.relative_to(REPO)}: {'; '.join(problems)}. Strip it with "
                          f"`.venv/bin/python tests/test_notebooks.py --strip {path.relative_to(REPO)}`")


@pytest.mark.parametrize("name", NAMES)
def test_a_notebook_starts_with_the_run_to_edit(name):
    """The first code cell has `RUN = None`, the line a user edits (None: BAGAN_RUN, else the newest run)."""
    nb = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text(encoding="utf-8"))
    first = next("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert any(line.startswith("RUN = None") for line in first.splitlines()), first[:300]


def test_the_newest_run_is_the_one_whose_training_finished_last(tmp_path, monkeypatch):
    """Not the newest config.json: a resumed old run finishes after a run started later."""
    from runs import find_run
    for name, config_time, finished_time in (("resumed", 100, 300), ("started-later", 200, 250)):
        run = tmp_path / name
        run.mkdir()
        for file, when in (("config.json", config_time), ("generator.keras", finished_time)):
            (run / file).write_text(json.dumps(dict(dataset="digits", image_size=32, class_names=["0", "1"])))
            os.utime(run / file, (when, when))
    monkeypatch.delenv("BAGAN_RUN", raising=False)
    monkeypatch.setenv("BAGAN_RESULTS", str(tmp_path))
    assert find_run(required=("config.json",)).name == "resumed"
    assert find_run(str(tmp_path / "started-later")).name == "started-later"  # the notebook's RUN = "..."


def test_strip_outputs_empties_outputs_and_counts(tmp_path):
    path = tmp_path / "x.ipynb"
    nb = json.loads((NOTEBOOKS / "progress.ipynb").read_text(encoding="utf-8"))
    clean = json.loads(json.dumps(nb))
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    code["execution_count"] = 3
    code["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["run: x\n"]}]
    code["metadata"]["execution"] = {"iopub.status.idle": "2026-01-01T00:00:00Z"}
    nb["metadata"]["widgets"] = {"state": {}}
    path.write_text(json.dumps(nb), encoding="utf-8")
    assert unstripped(json.loads(path.read_text(encoding="utf-8")))
    assert strip_outputs(path) is True
    assert json.loads(path.read_text(encoding="utf-8")) == clean
    assert strip_outputs(path) is False


# ---------------------------------------------------------------------------------------------
# Executing the notebooks


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, smoke_run):
    """A copy of the smoke run: latent_space.ipynb writes its feature classifier into the run folder."""
    return Path(shutil.copytree(smoke_run, tmp_path_factory.mktemp("notebooks") / "digits-tiny"))


@pytest.fixture(scope="module")
def kernel_manager(tmp_path_factory):
    """A kernel spec of this interpreter (the venv's), so the notebooks run where the tests run."""
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    kernels = tmp_path_factory.mktemp("jupyter") / "kernels"
    (kernels / KERNEL).mkdir(parents=True)
    (kernels / KERNEL / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "bagan-gp tests", "language": "python",
    }))

    def make():
        return KernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    return make


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory, cache_home):
    """The kernel's environment: no BAGAN_* of the caller, an empty Keras home, the session's cache
    (conftest.cache_home: judges trained once), small settings."""
    home = tmp_path_factory.mktemp("home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BAGAN_")}
    env.update(SMALL, KERAS_HOME=str(home / "keras"), XDG_CACHE_HOME=str(cache_home), TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("MPLBACKEND", None)
    return env


def execute(name, kernel_manager, env):
    """Run a notebook top to bottom in a fresh kernel (working folder notebooks/); fails on a cell error."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = NotebookClient(nb, km=kernel_manager(), timeout=CELL_TIMEOUT,
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute(env=env)
    return nb


def text(nb):
    """All stdout/stderr text and text/plain results of the notebook."""
    parts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            stream = out["output_type"] == "stream"
            parts.append(out.get("text", "") if stream else out.get("data", {}).get("text/plain", ""))
    return "".join("".join(p) if isinstance(p, list) else p for p in parts)


def images(nb, mime="image/png"):
    return sum(mime in out.get("data", {}) for cell in nb["cells"] for out in cell.get("outputs", []))


@pytest.fixture(scope="module")
def acgan_run(tmp_path_factory, train_run):
    """A run of a model without autoencoder (no encoder.keras, no reconstruction.png)."""
    return train_run(tmp_path_factory.mktemp("notebooks") / "digits-acgan", 2, 2, "--model", "acgan")


@pytest.fixture(scope="module")
def executed(tiny_run, acgan_run, kernel_manager, kernel_env, tmp_path_factory):
    """Every notebook execution the tests below read, three kernels (processes) at a time; each
    test's `executed[key].result()` is its notebook, or the error of its cell."""
    results = tmp_path_factory.mktemp("default") / "train_results"  # no BAGAN_RUN: the newest run there
    old = results / "digits-v3-old"
    old.mkdir(parents=True)
    (old / "config.json").write_text((tiny_run / "config.json").read_text())
    os.utime(old / "config.json", (1, 1))
    (results / "digits-v3-new").symlink_to(tiny_run, target_is_directory=True)
    (results / "not-a-run").mkdir()
    (results / "README.md").write_text("not a run\n")
    tiny = dict(kernel_env, BAGAN_RUN=str(tiny_run))
    acgan = dict(kernel_env, BAGAN_RUN=str(acgan_run), BAGAN_RESULTS=str(tmp_path_factory.mktemp("acgan")))
    jobs = {"progress": ("progress", tiny), "fid_report": ("fid_report", tiny), "latent_space": ("latent_space", tiny),
            "acgan progress": ("progress", acgan), "acgan latent_space": ("latent_space", acgan),
            "default run": ("progress", dict(kernel_env, BAGAN_RESULTS=str(results)))}
    with ThreadPoolExecutor(max_workers=3) as pool:
        return {key: pool.submit(execute, name, kernel_manager, env) for key, (name, env) in jobs.items()}


def test_progress_notebook(tiny_run, executed):
    nb = executed["progress"].result()
    out = text(nb)
    assert f"run: {tiny_run.resolve()}" in out
    assert "EPOCHS = [1, 2]" in out
    assert images(nb, "image/gif") == 1  # progress.gif
    assert images(nb) == 4  # the grids of EPOCHS, the losses, the reconstruction


def test_fid_report_notebook(tiny_run, executed):
    nb = executed["fid_report"].result()
    out = text(nb)
    assert "falling back to --weights random" in out
    assert "--per-class 8" in out and "--real-per-class 8" in out
    assert f"{tiny_run.name} [not comparable]" in out  # fid.py's table row
    html = "".join(o.get("data", {}).get("text/html", "") for c in nb["cells"] for o in c.get("outputs", []))
    assert html.count("<tr") == 11  # header + 10 classes
    assert "minority classes: none" in out  # balanced digits
    assert f"{tiny_run.name}: memorised 0 " in out and str(tiny_run / "nearest_neighbours.png") in out
    assert images(nb) == 2  # the bar chart, nearest_neighbours.png


def test_latent_space_notebook(tiny_run, executed):
    nb = executed["latent_space"].result()
    out = text(nb)
    assert "(a) BAGAN: unsupervised encoder: skipped" in out  # the tiny run is v3 and there is no v1/v2 run
    assert "(b) BAGAN-GP: supervised encoder: 150 test images" in out
    assert "(c) BAGAN-GP: encoder + embedding: 150 test images" in out
    assert "classifier penultimate layer" in out
    assert (tiny_run / "fid_classifier.keras").is_file()
    assert images(nb) == 2  # Fig. 10, Fig. 11


def test_notebooks_on_a_model_without_autoencoder(executed):
    nb = executed["acgan progress"].result()
    out = text(nb)
    assert "model acgan," in out
    assert "reconstruction.png is not there" in out
    assert images(nb) == 3  # the grids of EPOCHS and the losses
    nb = executed["acgan latent_space"].result()
    out = text(nb)
    assert "has no encoder.keras (model acgan)" in out
    assert "(b) BAGAN-GP: supervised encoder: skipped" in out
    assert images(nb) == 2  # Fig. 10 (its panels say why they are empty), Fig. 11 of the AC-GAN


def test_default_run_is_the_newest_run_folder(tiny_run, executed):
    """Without BAGAN_RUN: the newest folder with a config.json in the results folder."""
    assert f"run: {tiny_run.resolve()}" in text(executed["default run"].result())


if __name__ == "__main__":
    if sys.argv[1:2] != ["--strip"]:
        sys.exit(__doc__)
    paths = [Path(p) for p in sys.argv[2:]] or sorted(NOTEBOOKS.glob("*.ipynb"))
    for p in paths:
        print(f"{p}: {'stripped' if strip_outputs(p) else 'already clean'}")
