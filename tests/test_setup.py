"""The first hour: setting up, the commands of the README as written, a GPU install without editing files."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

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
