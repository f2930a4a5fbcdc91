"""Fault injection for the tests: run `facerec` in this process and kill it with SIGKILL (or
make it hang) at a point the test chooses.

    python -m facerec_pipeline_tests.kill_at MODULE:FUNCTION WHEN MATCH -- ARGS...

WHEN: before, after, hang or pause.

The function (as the module that calls it sees it) is wrapped: when MATCH is `*` or equals one of
its positional arguments (or the table name of a StageTable argument), the process kills itself
before or after the call, sleeps there (hang), or waits there for a line on stdin (pause).
"""

import importlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def _names(value) -> list[str]:
    table = getattr(value, "table", None)  # a stage table: the name of the table it writes
    return [str(value)] + ([table.name] if table is not None else [])


def main() -> None:
    target, when, match = sys.argv[1:4]
    args = sys.argv[sys.argv.index("--") + 1 :]
    module_name, name = target.split(":")
    module = importlib.import_module(module_name)
    original = getattr(module, name)

    def wrapped(*positional, **keywords):
        chosen = match == "*" or match in [name for value in positional for name in _names(value)]
        if chosen and when == "hang":
            print("hanging", flush=True)
            time.sleep(600)
        if chosen and when == "pause":  # until the test writes a line to stdin
            print("paused", flush=True)
            sys.stdin.readline()
        if chosen and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*positional, **keywords)
        if chosen and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(module, name, wrapped)
    from facerec_pipeline.cli.main import cli

    cli(args)


@contextmanager
def paused_at(
    env: dict[str, str], target: str, match: str, *args: str
) -> Iterator[Callable[[], tuple[int, str]]]:
    """`facerec ARGS` in a subprocess, held at TARGET (pause) until the block calls the `resume`
    it yields, which returns (exit status, what the command printed from then on); killed when
    the block ends with it still running."""
    run = subprocess.Popen(
        [sys.executable, "-m", "facerec_pipeline_tests.kill_at", target, "pause", match, "--"]
        + list(args),
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def resume() -> tuple[int, str]:
        output, _ = run.communicate("\n", timeout=240)
        return run.returncode, output

    try:
        before = []
        while (line := run.stdout.readline()) and line.strip() != "paused":
            before.append(line)
        assert line.strip() == "paused", "".join(before)
        yield resume
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


if __name__ == "__main__":
    main()
