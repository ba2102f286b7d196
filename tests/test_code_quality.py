"""ruff and mypy, configured in pyproject.toml, run as part of the test command."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("tool, args", [
    ("ruff", ["check", "src", "tests", "benchmarks"]),
    ("mypy", []),
])
def test_tool_is_clean(tool: str, args: list[str]) -> None:
    command = [sys.executable, "-m", tool, *args]
    if shutil.which(tool) is None and tool == "ruff":
        pytest.fail("ruff is not installed: pip install -e '.[dev]'")
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
