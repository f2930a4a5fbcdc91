"""The code is as `ruff format` writes it and as `ruff check` wants it, with no formatter
escapes: a reader sees one style, and the formatter never fights a hand-made layout. The layers
hold (import contracts), modules and functions stay short enough to read, and the environment
is read in one place."""

import ast
import re
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
    """The contracts in pyproject.toml ([tool.importlinter]): only defs/ imports Dagster, the
    layers point downward (entry points, the Dagster boundary, the application, sources, core,
    database, settings), and no package imports one that imports it back."""
    linted = subprocess.run(
        [sys.executable, "-c", "import sys, importlinter.cli as c; sys.exit(c.lint_imports())"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr


PACKAGE = REPO / "facerec_pipeline"
MAX_MODULE_LINES = 420  # "about 400": a module a reader takes in at once
MAX_FUNCTION_LINES = 80


def package_modules() -> list:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if "migrations" not in p.parts]


def test_modules_and_functions_stay_short():
    """Outside the migrations, no module over ~400 lines and no function over 80."""
    long_modules, long_functions = [], []
    for path in package_modules():
        source = path.read_text()
        name = path.relative_to(REPO)
        if source.count("\n") > MAX_MODULE_LINES:
            long_modules.append(f"{name}: {source.count(chr(10))} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{name}:{node.lineno} {node.name}: {length} lines")
    assert long_modules == [] and long_functions == []


# Where the process environment may be touched besides settings.py, and why.
ENVIRONMENT_USES = {
    # Sets DEEPFACE_HOME for DeepFace (which reads it) and refuses a conflicting one.
    "facerec_pipeline/core/faces/weights.py",
    # Names the settings' Dagster home in DAGSTER_HOME for DagsterInstance.get().
    "facerec_pipeline/defs/instance.py",
    # Hands the environment on to pg_dump / pg_restore child processes.
    "facerec_pipeline/app/backups.py",
    "facerec_pipeline/app/restore.py",
    # Hands the environment on to the Celery worker `facerec worker` starts.
    "facerec_pipeline/defs/executors.py",
}
ENVIRONMENT = re.compile(r"os\.environ|os\.getenv|getenv\(")


def test_the_environment_is_read_in_settings_only():
    """One settings object (settings.py) reads the project's variables; a module that reads
    one itself would be a second place to configure the project."""
    touching = {
        path.relative_to(REPO).as_posix()
        for path in package_modules()
        if ENVIRONMENT.search(path.read_text())
    }
    assert touching - ENVIRONMENT_USES == {"facerec_pipeline/settings.py"}
