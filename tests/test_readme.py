"""Every snippet of README.md runs as written, offline: each ```python block, and the ```bash blocks in order.

The first bash block is the pair of commands CI itself runs (install + default job, install + tests): its default
job runs here too, without the installs. The other bash blocks run after it, in a copy of the checkout beside the
shared data (so ``../shared/data`` in a command means what it says), with this interpreter as ``python``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from checkout import shared_root

REPO = Path(__file__).resolve().parents[1]
README = Path(os.environ.get("ST_UNIREP_README") or REPO / "README.md")
SKIP_COPY = {
    ".git",
    ".venv",
    ".venv-ci",
    ".cache",
    "output",
    "compare",
    "models",
    "runs",
    "search-index",
    "__pycache__",
}


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)


def _env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run(command: list[str], cwd: Path, what: str, timeout: int = 900) -> None:
    done = subprocess.run(command, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{what} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"


def test_the_readme_has_its_two_commands_first():
    first = blocks("bash")[0].strip().splitlines()
    assert first == [
        "pip install torch==2.13.0 -e . && python train/train.py",
        'pip install torch==2.13.0 -e ".[dev]" && python -m pytest -q tests',
    ]
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert first[1].replace("pip install ", "pip install -q ") in ci, ".ci/run runs the README's test command (quietly)"


def _checkout_copy(root: Path) -> Path:
    """A copy of this checkout at ``root/main`` with the shared folder at ``root/shared`` (as in a real checkout)."""
    checkout = root / "main"
    shutil.copytree(REPO, checkout, ignore=lambda _, names: [n for n in names if n in SKIP_COPY])
    (root / "shared").symlink_to(shared_root(), target_is_directory=True)
    return checkout


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    return _checkout_copy(tmp_path_factory.mktemp("readme"))


@pytest.mark.parametrize("number", range(len(blocks("python"))))
def test_python_snippet_runs(number, checkout):
    snippet = blocks("python")[number]
    (checkout / f"snippet_{number}.py").write_text(snippet, encoding="utf-8")
    _run([sys.executable, f"snippet_{number}.py"], checkout, f"README python block {number + 1}:\n{snippet}")


@pytest.mark.slow
def test_shell_snippets_run_in_order(tmp_path):
    checkout = _checkout_copy(tmp_path)
    first, *rest = blocks("bash")
    default_job = first.strip().splitlines()[0].split("&&", 1)[1].strip()
    _run(["bash", "-c", default_job], checkout, f"the default job ({default_job})")
    for number, block in enumerate(rest, start=2):
        _run(["bash", "-euo", "pipefail", "-c", block], checkout, f"README bash block {number}:\n{block}")
