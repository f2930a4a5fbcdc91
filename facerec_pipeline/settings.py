"""The one settings object: the storage root, the database URL, the web sources, Dagster's home
and DeepFace's, and the paths derived from them.

This is the one module that reads the project's environment variables (a test in
test_code_style.py holds it), once, in `Settings.from_env`; everything else is handed a
`Settings`. Tests and deployments point the whole project elsewhere with `FACEREC_STORAGE_DIR`
and `DATABASE_URL` alone. A `DATABASE_URL` that is set is checked here, before anything
connects: a typo must not quietly become a new, empty database.

- `FACEREC_STORAGE_DIR`: the storage root (default `./storage`);
- `DATABASE_URL`: the project's database (default `sqlite:///<storage>/facerec.db`);
- `DAGSTER_HOME`: Dagster's instance folder (default `<storage>/dagster`);
- `FACEREC_WIKIDATA_SPARQL_URL`, `FACEREC_COMMONS_API_URL`, `FACEREC_SERP_API_URL`: the web
  endpoints (default: the public services);
- `FACEREC_USER_AGENT`: the User-Agent sent to Wikimedia (required for the real services);
- `FACEREC_SERP_API_KEY`: the paid search key; only whether it is set is kept here;
- `FACEREC_SERP_COST_PER_CALL`: the paid search's price per call in USD (default 0.015);
- `FACEREC_EXECUTOR`: where a run's steps execute: `in_process` (default: the machine that runs
  it) or `celery` (Celery workers, `facerec worker`; needs the two below and PostgreSQL);
- `FACEREC_CELERY_BROKER`: the Celery broker's URL (e.g. `redis://127.0.0.1:6379/0`);
- `FACEREC_CELERY_BACKEND`: where workers leave step results (default: the broker);
- `FACEREC_FACE_BATCH_SIZE`: photos (faces, for the embeddings) in one step of a face stage
  (default 1000): each batch is a step an executor can place on its own worker.

DeepFace's home (`DEEPFACE_HOME`) is not a setting of its own: it is `<storage>/models`, set
for DeepFace by core/faces/weights.py `use_models_dir` when an engine is built.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

DOMAIN_CODE_PATTERN = re.compile(r"^[a-z][a-z0-9_]{1,49}$")
# user:password@ in a string SQLAlchemy cannot parse (so cannot mask).
_PASSWORD_IN_TEXT = re.compile(r"(//[^:/@]*:)[^@/]*@")
DATABASE_URL_EXAMPLES = (
    "e.g. sqlite:////srv/facerec/facerec.db or postgresql://user:pw@host/facerec"
)


class SettingsError(ValueError):
    """An environment variable that cannot work; the message names it and the fix."""


class InvalidDomainCode(ValueError):
    """A domain code that could not safely become a partition key, a path or a SQL parameter."""


def validate_domain_code(code: str) -> str:
    """Return `code` if it is a valid domain code, else raise InvalidDomainCode."""
    if not isinstance(code, str) or not DOMAIN_CODE_PATTERN.fullmatch(code):
        raise InvalidDomainCode(
            f"invalid domain code {code!r}: use 2-50 characters, lowercase letters, digits and "
            "'_', starting with a letter (e.g. 'serbia', 'sports_global')"
        )
    return code


def masked_url(url: str) -> str:
    """`url` with its password replaced by ***, fit to print."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return _PASSWORD_IN_TEXT.sub(r"\1***@", url)


def validate_database_url(url: str) -> str:
    """Return `url` (DATABASE_URL) if it can name this project's database, else raise
    SettingsError: unparsable, an unknown kind of database, a driver that is not installed, a
    SQLite URL with a user, password or host (SQLite would refuse it), an in-memory SQLite
    database (keeps nothing) or a SQLite file in a directory that does not exist (the database is
    never created there)."""
    shown = masked_url(url)
    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except NoSuchModuleError as error:
        raise SettingsError(
            f"DATABASE_URL={shown}: no database driver {parsed.drivername!r} is known (a typo? "
            f"{DATABASE_URL_EXAMPLES}); fix DATABASE_URL"
        ) from error
    except ArgumentError as error:
        raise SettingsError(
            f"DATABASE_URL={shown} is not a database URL ({DATABASE_URL_EXAMPLES}); fix it, or "
            "unset it to use FACEREC_STORAGE_DIR/facerec.db"
        ) from error
    try:
        dialect.import_dbapi()
    except ImportError as error:
        raise SettingsError(
            f"DATABASE_URL={shown}: its database driver is not installed ({error}); install it "
            "in this environment or fix DATABASE_URL"
        ) from error
    if parsed.get_backend_name() == "sqlite":
        if parsed.username or parsed.password or parsed.host or parsed.port:
            raise SettingsError(
                f"DATABASE_URL={shown}: a SQLite URL names a file only, no user, password or "
                "host (e.g. sqlite:////srv/facerec/facerec.db); fix DATABASE_URL"
            )
        if not parsed.database or parsed.database == ":memory:":
            raise SettingsError(
                f"DATABASE_URL={shown} names an in-memory database, which keeps nothing; name a "
                "file (e.g. sqlite:////srv/facerec/facerec.db) or unset DATABASE_URL"
            )
        folder = Path(parsed.database).absolute().parent
        if not folder.is_dir():
            raise SettingsError(
                f"DATABASE_URL={shown}: the directory {folder} does not exist (a database is never "
                "created in a missing directory); fix DATABASE_URL or create the directory"
            )
    return url


SERP_API_KEY_ENV = "FACEREC_SERP_API_KEY"
DEFAULT_SERP_COST_PER_CALL = 0.015


@dataclass(frozen=True)
class WebSettings:
    """The web sources' settings. None means the source's own default (the public service); the
    paid search key itself is never copied here (Dagster resolves it as an EnvVar at run start),
    only whether it is set."""

    wikidata_sparql_url: str | None = None
    commons_api_url: str | None = None
    serp_api_url: str | None = None
    user_agent: str | None = None
    serp_cost_per_call: float = DEFAULT_SERP_COST_PER_CALL
    serp_api_key_set: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> WebSettings:
        cost = environ.get("FACEREC_SERP_COST_PER_CALL") or ""
        try:
            cost_per_call = float(cost) if cost else DEFAULT_SERP_COST_PER_CALL
        except ValueError as error:
            raise SettingsError(
                f"FACEREC_SERP_COST_PER_CALL={cost!r} is not a number; set it to the price of "
                f"one paid search call in USD (e.g. {DEFAULT_SERP_COST_PER_CALL}) or unset it"
            ) from error
        return cls(
            wikidata_sparql_url=environ.get("FACEREC_WIKIDATA_SPARQL_URL") or None,
            commons_api_url=environ.get("FACEREC_COMMONS_API_URL") or None,
            serp_api_url=environ.get("FACEREC_SERP_API_URL") or None,
            user_agent=environ.get("FACEREC_USER_AGENT") or None,
            serp_cost_per_call=cost_per_call,
            serp_api_key_set=bool(environ.get(SERP_API_KEY_ENV)),
        )


EXECUTORS = ("in_process", "celery")
DEFAULT_FACE_BATCH_SIZE = 1000
# Seconds after which the broker gives a step of a worker that stopped answering to another.
DEFAULT_REDELIVER_AFTER = 300


@dataclass(frozen=True)
class ExecutorSettings:
    """Where runs execute their steps: `in_process` (this machine), or `celery` (the workers
    that listen on the broker; `backend` keeps their results, the broker itself by default)."""

    name: str = "in_process"
    broker: str | None = None
    backend: str | None = None
    face_batch_size: int = DEFAULT_FACE_BATCH_SIZE
    redeliver_after: int = DEFAULT_REDELIVER_AFTER

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ExecutorSettings:
        name = environ.get("FACEREC_EXECUTOR") or "in_process"
        if name not in EXECUTORS:
            raise SettingsError(
                f"FACEREC_EXECUTOR={name!r} is not an executor; set it to one of "
                f"{', '.join(EXECUTORS)} or unset it (in_process)"
            )
        broker = environ.get("FACEREC_CELERY_BROKER") or None
        size = whole_number(environ, "FACEREC_FACE_BATCH_SIZE", DEFAULT_FACE_BATCH_SIZE, 1)
        redeliver_after = whole_number(
            environ, "FACEREC_CELERY_REDELIVER_AFTER", DEFAULT_REDELIVER_AFTER, 10
        )
        backend = environ.get("FACEREC_CELERY_BACKEND") or broker
        return cls(name, broker, backend, size, redeliver_after)


def whole_number(environ: Mapping[str, str], name: str, default: int, least: int) -> int:
    """The whole number a variable sets (`default` when unset), refused below `least`."""
    value = environ.get(name) or str(default)
    if not value.isdigit() or int(value) < least:
        raise SettingsError(
            f"{name}={value!r} is not a whole number of at least {least}; set it to one "
            f"(e.g. {default}) or unset it"
        )
    return int(value)


@dataclass(frozen=True)
class Settings:
    storage_dir: Path
    database_url: str
    # True when DATABASE_URL chose the database (it is then announced and checked strictly).
    database_url_from_env: bool = False
    web: WebSettings = field(default_factory=WebSettings)
    # DAGSTER_HOME when set; None means <storage>/dagster.
    dagster_home_from_env: Path | None = None
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        storage_dir = Path(environ.get("FACEREC_STORAGE_DIR") or "storage").resolve()
        explicit = environ.get("DATABASE_URL") or ""
        home = environ.get("DAGSTER_HOME") or ""
        return cls(
            storage_dir=storage_dir,
            database_url=(
                validate_database_url(explicit)
                if explicit
                else f"sqlite:///{storage_dir / 'facerec.db'}"
            ),
            database_url_from_env=bool(explicit),
            web=WebSettings.from_env(environ),
            dagster_home_from_env=Path(home).resolve() if home else None,
            executor=ExecutorSettings.from_env(environ),
        )

    @property
    def database_label(self) -> str:
        """The database URL fit to print (password masked)."""
        return masked_url(self.database_url)

    def database_hint(self) -> str:
        """Which setting decides where the database is, for error messages."""
        if self.database_url_from_env:
            return "fix DATABASE_URL"
        return f"check FACEREC_STORAGE_DIR ({self.storage_dir}): a writable folder for facerec.db"

    def prepare_storage(self) -> None:
        """Create the storage root if it is missing (and with it the default database's
        directory); SettingsError naming FACEREC_STORAGE_DIR when it cannot be or is read-only."""
        if self.storage_dir.exists() and not self.storage_dir.is_dir():
            raise SettingsError(
                f"FACEREC_STORAGE_DIR: {self.storage_dir} is a file, not a directory; point "
                "FACEREC_STORAGE_DIR at a writable directory"
            )
        try:
            self.storage_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise SettingsError(
                f"FACEREC_STORAGE_DIR: cannot create the storage directory {self.storage_dir} "
                f"({error.strerror or error}); point FACEREC_STORAGE_DIR at a writable directory"
            ) from error
        if not os.access(self.storage_dir, os.W_OK | os.X_OK):
            raise SettingsError(
                f"FACEREC_STORAGE_DIR: the storage directory {self.storage_dir} is not writable; "
                "make it writable or point FACEREC_STORAGE_DIR at a writable directory"
            )

    # Paths from the design documents. Domain codes are validated before they become paths.
    def training_dir(self, domain: str) -> Path:
        return self.storage_dir / "training" / validate_domain_code(domain)

    def training_pass_dir(self, domain: str) -> Path:
        return self.storage_dir / "trainingPass" / validate_domain_code(domain)

    def batched_dir(self, domain: str) -> Path:
        return self.storage_dir / "recognized_faces_batched" / validate_domain_code(domain)

    def previews_dir(self, domain: str) -> Path:
        return self.storage_dir / "previews" / validate_domain_code(domain)

    def reports_dir(self, domain: str) -> Path:
        return self.storage_dir / "reports" / validate_domain_code(domain)

    def prod_dir(self, domain: str) -> Path:
        return self.storage_dir / "recognized_faces_prod" / validate_domain_code(domain)

    @property
    def models_dir(self) -> Path:
        return self.storage_dir / "models"

    @property
    def dagster_home(self) -> Path:
        """Dagster's instance folder: DAGSTER_HOME when set, else <storage>/dagster."""
        return self.dagster_home_from_env or self.storage_dir / "dagster"

    @property
    def cache_dir(self) -> Path:
        """What can be rebuilt: resolved Wikidata classes, folder scans."""
        return self.storage_dir / "cache"

    @property
    def step_outputs_dir(self) -> Path:
        """What the steps of a face stage pass each other (plan, batches), a folder per run,
        removed once the run has ended."""
        return self.cache_dir / "step_outputs"

    @property
    def backups_dir(self) -> Path:
        return self.storage_dir / "backups"

    @property
    def sample_photos_dir(self) -> Path:
        return self.storage_dir / "sample_photos"

    def relative(self, path: Path) -> str:
        """A storage path as stored in the database: relative to the storage root when inside it."""
        if path.is_absolute() and ".." not in path.parts and path.is_relative_to(self.storage_dir):
            return path.relative_to(self.storage_dir).as_posix()  # no file system calls
        try:
            return path.resolve().relative_to(self.storage_dir).as_posix()
        except ValueError:
            return str(path)

    def absolute(self, stored: str) -> Path:
        path = Path(stored)
        return path if path.is_absolute() else self.storage_dir / path
