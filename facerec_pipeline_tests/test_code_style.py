"""The code is as `ruff format` writes it and as `ruff check` wants it, with no formatter
escapes: a reader sees one style, and the formatter never fights a hand-made layout."""

import subprocess
import sys

from facerec_pipeline_tests.conftest import REPO

CODE = ["facerec_pipeline", "facerec_pipeline_tests", "bench"]
ESCAPES = ("fmt: " + "skip", "fmt: " + "off")  # spelled apart, so this file has none


def ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, *CODE],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_ruff_format_and_check_are_clean():
    formatted = ruff("format", "--check")
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr
    checked = ruff("check")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_no_formatter_escapes():
    escapes = [
        f"{path.relative_to(REPO)}:{number}"
        for folder in CODE
        for path in sorted((REPO / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if any(escape in line for escape in ESCAPES)
    ]
    assert escapes == []


def test_import_layers_hold():
    """The contracts in pyproject.toml ([tool.importlinter]): the core imports no Dagster and
    only points downward, the stages stand on it, and no package imports one that imports it
    back."""
    linted = subprocess.run(
        [sys.executable, "-c", "import sys, importlinter.cli as c; sys.exit(c.lint_imports())"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr
