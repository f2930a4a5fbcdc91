"""A real, throwaway PostgreSQL server for the tests: Debian's `postgresql` binaries (installed by
.ci/run), a data folder in a temporary directory, listening on 127.0.0.1 on a free port, with a
password-protected role. PostgreSQL refuses to run as root, so as root the server runs as the
`postgres` system user. Without the binaries the tests fail saying what to install."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
from psycopg2 import sql

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's `postgresql` "
    "package (apt-get install -y postgresql; .ci/run does it) to run the PostgreSQL tests"
)
TIMEOUT_S = 60
# A Dagster instance on PostgreSQL, its URL in FACEREC_TEST_DAGSTER_PG_URL (a database of the
# test server), one slot per pool.
DAGSTER_YAML = """\
telemetry:
  enabled: false
storage:
  postgres:
    postgres_url:
      env: FACEREC_TEST_DAGSTER_PG_URL
concurrency:
  pools:
    default_limit: 1
"""
ROLE = "facerec"


class PostgresUnavailable(RuntimeError):
    pass


def server_bindir() -> Path:
    """The folder of initdb and pg_ctl: the newest /usr/lib/postgresql/<version>/bin, else PATH."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    raise PostgresUnavailable(INSTALL_HINT)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class PostgresServer:
    host: str
    port: int
    password: str  # the facerec role's password (also the superuser's)
    role: str = ROLE

    def url(self, database: str, driver: str = "postgresql+psycopg2") -> str:
        return f"{driver}://{self.role}:{self.password}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database owned by the role; returns its SQLAlchemy URL."""
        connection = psycopg2.connect(
            host=self.host,
            port=self.port,
            user="postgres",
            password=self.password,
            dbname="postgres",
            connect_timeout=10,
        )
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(name), sql.Identifier(self.role)
                    )
                )
        finally:
            connection.close()
        return self.url(name)


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a PostgreSQL server for the duration of the block, then stop it and delete it."""
    bindir = server_bindir()
    as_root = os.geteuid() == 0
    run_as: dict = {}
    folder = Path(tempfile.mkdtemp(prefix="facerec-pg-"))
    if as_root:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError as error:
            raise PostgresUnavailable(
                f"running as root and no `postgres` user to run the server as; {INSTALL_HINT}"
            ) from error
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        run_as = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
    password = "pw-" + secrets.token_hex(12)
    data, sockets, log = folder / "data", folder / "sockets", folder / "server.log"
    port = _free_port()

    def call(*args: str) -> None:
        done = subprocess.run(
            list(args),
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            cwd=folder,
            **run_as,
        )
        if done.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise PostgresUnavailable(
                f"{Path(args[0]).name} failed ({done.returncode}): {done.stderr.strip()}\n{tail}"
            )

    password_file = folder / "pwfile"
    password_file.write_text(password + "\n")
    if as_root:
        os.chown(password_file, run_as["user"], run_as["group"])
    started = False
    try:
        call(
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            f"--pwfile={password_file}",
            "--encoding=UTF8",
            "--locale=C",
        )
        password_file.unlink()
        (sockets).mkdir()
        if as_root:
            os.chown(sockets, run_as["user"], run_as["group"])
        call(
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(log),
            "-o",
            f"-h 127.0.0.1 -p {port} -k {sockets} -c fsync=off",
            "-w",
            "-t",
            str(TIMEOUT_S),
            "start",
        )
        started = True
        connection = psycopg2.connect(
            host="127.0.0.1",
            port=port,
            user="postgres",
            password=password,
            dbname="postgres",
            connect_timeout=10,
        )
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(ROLE)),
                    (password,),
                )
        finally:
            connection.close()
        yield PostgresServer("127.0.0.1", port, password)
    finally:
        if started:
            with contextlib.suppress(PostgresUnavailable, subprocess.TimeoutExpired):
                call(
                    str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "30", "stop"
                )
        shutil.rmtree(folder, ignore_errors=True)
