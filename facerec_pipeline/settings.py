"""Where things live: the storage root, the database URL and the paths derived from them.

Everything is read from the environment once, so tests and deployments point the whole project
elsewhere with `FACEREC_STORAGE_DIR` and `DATABASE_URL` alone. A `DATABASE_URL` that is set is
checked here, before anything connects: a typo must not quietly become a new, empty database.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Settings:
    storage_dir: Path
    database_url: str
    # True when DATABASE_URL chose the database (it is then announced and checked strictly).
    database_url_from_env: bool = False

    @classmethod
    def from_env(cls) -> Settings:
        storage_dir = Path(os.environ.get("FACEREC_STORAGE_DIR") or "storage").resolve()
        explicit = os.environ.get("DATABASE_URL") or ""
        if explicit:
            return cls(storage_dir, validate_database_url(explicit), database_url_from_env=True)
        return cls(storage_dir=storage_dir, database_url=f"sqlite:///{storage_dir / 'facerec.db'}")

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
        return self.storage_dir / "dagster"

    @property
    def cache_dir(self) -> Path:
        """What can be rebuilt: resolved Wikidata classes, folder scans."""
        return self.storage_dir / "cache"

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
