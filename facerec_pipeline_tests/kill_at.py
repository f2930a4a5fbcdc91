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
import sys
import time


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


if __name__ == "__main__":
    main()
