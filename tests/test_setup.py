"""The first hour: setting up, the commands of the README as written, a GPU install without editing files."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pins(path):
    """Package pins of a requirements file, following -r includes."""
    found = {}
    for line in (REPO / path).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            found.update(pins(line[3:].strip()))
        elif line:
            name, _, version = line.partition("==")
            found[name] = version
    return found


def test_a_gpu_install_is_one_command_with_the_same_pins():
    cpu, gpu = pins("requirements.txt"), pins("requirements-gpu.txt")
    assert cpu.pop("tensorflow-cpu") == gpu.pop("tensorflow[and-cuda]")
    assert cpu == gpu  # everything else pinned alike, in one file (requirements-common.txt)
    dry = subprocess.run(["make", "-n", "-B", "setup", "GPU=1"], cwd=REPO, capture_output=True, text=True, check=True)
    assert "-r requirements-gpu.txt" in dry.stdout
    dry = subprocess.run(["make", "-n", "-B", "setup"], cwd=REPO, capture_output=True, text=True, check=True)
    assert "-r requirements.txt" in dry.stdout


def test_the_readme_sets_up_before_its_first_python_command():
    """After `make setup` the README's `python ...` commands need the virtual environment: it says how first."""
    readme = (REPO / "README.md").read_text()
    first_python = re.search(r"^python \S+\.py", readme, re.M).start()
    activate = readme.find("source .venv/bin/activate")
    assert 0 <= activate < first_python
    assert readme.find("make setup") < first_python
    assert "make try" in readme[:first_python]


MISTYPED_FLAGS = [  # script, arguments with an abbreviated flag, that flag, the flag it abbreviates
    ("bagan_train.py", ["--ae-epoch", "1"], "--ae-epoch", "--ae-epochs"),
    ("fid.py", ["run", "--per-clas", "5"], "--per-clas", "--per-class"),
    ("classify.py", ["--see", "2"], "--see", "--seeds"),
    ("compare.py", ["--out", "report", "--fid-per", "5"], "--fid-per", "--fid-per-class"),
    ("generate.py", ["run", "--to", "out", "--per-clas=5"], "--per-clas", "--per-class"),
    ("datasets.py", ["--see", "1"], "--see", "--seed"),
    ("smallfolder.py", ["folder", "--count", "3", "3"], "--count", "--counts"),
    *[(f"benchmarks/{path.name}", ["--jso"], "--jso", "--json") for path in sorted((REPO / "benchmarks").glob("*.py"))],
]


@pytest.mark.parametrize("script, argv, flag, nearest", MISTYPED_FLAGS, ids=[m[0] for m in MISTYPED_FLAGS])
def test_every_script_refuses_an_abbreviated_flag_in_one_line_naming_the_nearest(script, argv, flag, nearest,
                                                                                   capsys):
    """`generate.py --per-clas 5` used to run as --per-class: every script refuses an abbreviation
    (even where a required argument is missing too) in one line, and --help still works."""
    module = importlib.import_module(script[:-3].replace("/", "."))
    with pytest.raises(SystemExit) as stopped:
        module.main(argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.endswith(f"error: unrecognized argument {flag} (did you mean {nearest}?)\n")
    assert err.count("\n") == 1
    with pytest.raises(SystemExit) as stopped:
        module.main(["--help"])
    assert stopped.value.code == 0
    assert nearest in capsys.readouterr().out


def test_gpu_check_refuses_in_one_line_without_a_gpu(tmp_path, capsys):
    """make gpu-check: on a machine without a GPU it stops before any work, naming --allow-cpu."""
    import tensorflow as tf
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU: make gpu-check runs for real")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import gpu_check
    assert gpu_check.main(["--out", str(tmp_path / "check")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no GPU" in err[0] and "--allow-cpu" in err[0]
    assert not (tmp_path / "check").exists()
