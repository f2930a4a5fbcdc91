"""Where things live: the storage root, the database URL and the paths derived from them.

Everything is read from the environment once, so tests and deployments point the whole project
elsewhere with `FACEREC_STORAGE_DIR` and `DATABASE_URL` alone.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

DOMAIN_CODE_PATTERN = re.compile(r"^[a-z][a-z0-9_]{1,49}$")


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


@dataclass(frozen=True)
class Settings:
    storage_dir: Path
    database_url: str

    @classmethod
    def from_env(cls) -> Settings:
        storage_dir = Path(os.environ.get("FACEREC_STORAGE_DIR") or "storage").resolve()
        database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{storage_dir / 'facerec.db'}"
        return cls(storage_dir=storage_dir, database_url=database_url)

    # Paths from the design documents. Domain codes are validated before they become paths.
    def training_dir(self, domain: str) -> Path:
        return self.storage_dir / "training" / validate_domain_code(domain)

    def training_pass_dir(self, domain: str) -> Path:
        return self.storage_dir / "trainingPass" / validate_domain_code(domain)

    def batched_dir(self, domain: str) -> Path:
        return self.storage_dir / "recognized_faces_batched" / validate_domain_code(domain)

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
