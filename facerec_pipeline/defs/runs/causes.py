"""Why a run stopped, kept in a file named by its invocation (the run's `INVOCATION_TAG`,
recovery.py) when the run could not record it itself: its database was unreachable, its disk
full. Recovery reads the cause when it marks the run failed. No Dagster here.
"""

from __future__ import annotations

from pathlib import Path

from facerec_pipeline.settings import Settings

CAUSE_BYTES = 4096


def cause_path(settings: Settings, invocation: str) -> Path:
    return settings.cache_dir / "run_causes" / f"{invocation}.txt"


def reserve_cause(settings: Settings, invocation: str) -> None:
    """Room for why the run may stop, taken when it starts (blank): a full disk can still be
    said there, since writing over a file's own bytes needs no new space."""
    path = cause_path(settings, invocation)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b" " * CAUSE_BYTES)
    except OSError:
        path.unlink(missing_ok=True)  # no room at all: leave_cause tries again


def leave_cause(settings: Settings, invocation: str, cause: str) -> bool:
    """Why a run stopped, kept where recovery finds it when the run could not record it itself
    (its database was unreachable, its disk full); False when it could not be written."""
    path = cause_path(settings, invocation)
    data = cause.encode("utf-8")[: CAUSE_BYTES - 1] + b"\n"
    try:
        if path.is_file():  # over the reserved bytes
            with path.open("r+b") as file:
                file.write(data)
                file.truncate(len(data))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return True
    except OSError:
        return False


def forget_cause(settings: Settings, invocation: str | None) -> None:
    if invocation:
        try:
            cause_path(settings, invocation).unlink(missing_ok=True)
        except OSError:
            pass


def left_cause(settings: Settings, invocation: str | None) -> str | None:
    """The cause a run left (its `INVOCATION_TAG`, recovery.py, names the file), or None: it
    left none, or the room reserved for it was never written (the run was killed)."""
    if not invocation:
        return None
    try:
        text = cause_path(settings, invocation).read_bytes().decode("utf-8", "replace")
    except OSError:
        return None
    return text.strip() or None  # blank: reserved, never written (killed)
