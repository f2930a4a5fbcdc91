"""A polite HTTP client for public APIs (Wikidata, Commons) and a paid search provider.

- A User-Agent naming the client and a contact is required; generic ones are refused.
- API requests are serial (one at a time per client); downloads at most two at a time.
- 429 and 503 wait for `Retry-After`; other 5xx, timeouts and connection errors back off
  exponentially (capped); other 4xx are final. MediaWiki's `maxlag` answer waits and retries.
- JSON is parsed strictly: a wrong content type or cut-off body is an error, never "no results".
No Dagster here.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import requests

GENERIC_AGENT = re.compile(r"^(python-requests|python-urllib|curl|wget|mozilla|java|go-http)", re.I)
CONTACT = re.compile(r"\(([^)]*(@|https?://)[^)]*)\)")


class HttpProblem(Exception):
    """A request that did not give a usable answer. `reason` is a short recorded word."""

    reason = "http_error"

    def __init__(self, message: str, url: str = "", status: int | None = None):
        super().__init__(message)
        self.url = url
        self.status = status


class FinalHttpError(HttpProblem):
    reason = "http_client_error"


class RetriesExhausted(HttpProblem):
    reason = "retries_exhausted"


class BadResponse(HttpProblem):
    reason = "bad_response"


class TooLarge(HttpProblem):
    reason = "too_large"


class NotAnImage(HttpProblem):
    reason = "not_an_image"


class UserAgentRefused(ValueError):
    pass


def check_user_agent(user_agent: str, require_contact: bool = True) -> str:
    """`<client>/<version> (<contact url or email>) ...` as Wikimedia's policy asks. Library
    defaults are always refused; the contact is required for Wikimedia's own hosts."""
    agent = (user_agent or "").strip()
    if not agent or GENERIC_AGENT.match(agent) or "/" not in agent.split(" ")[0]:
        raise UserAgentRefused(
            f"refusing the generic User-Agent {agent!r}: set FACEREC_USER_AGENT to "
            "'<client>/<version> (<contact url or email>)', e.g. "
            "'acme-facerec/1.0 (https://acme.example/contact; ops@acme.example)'"
        )
    if require_contact and not CONTACT.search(agent):
        raise UserAgentRefused(
            f"the User-Agent {agent!r} names no contact: add '(<url or email>)' after the version"
        )
    return f"{agent} python-requests/{requests.__version__}"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    max_retry_after: float = 300.0  # a longer requested wait fails the request instead


@dataclass(frozen=True)
class Downloaded:
    path: Path
    sha256: str
    size: int
    content_type: str


def retry_after_seconds(value: str | None, default: float) -> float:
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return default


class PoliteSession:
    def __init__(
        self,
        user_agent: str,
        *,
        timeout: tuple[float, float] = (10.0, 60.0),
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
        session: requests.Session | None = None,
        max_concurrent_downloads: int = 2,
        require_contact: bool = True,
    ):
        self.user_agent = check_user_agent(user_agent, require_contact)
        self.timeout = timeout
        self.retry = retry
        self.sleep = sleep
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = self.user_agent
        self._api_lock = threading.Lock()
        self._downloads = threading.BoundedSemaphore(max_concurrent_downloads)
        self.requests_made = 0
        self.waited_seconds = 0.0

    def _wait(self, seconds: float) -> None:
        self.waited_seconds += seconds
        self.sleep(seconds)

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.retry.backoff_cap, self.retry.backoff_base * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)

    def request(
        self,
        url: str,
        params: dict[str, Any] | None = None,
        *,
        stream: bool = False,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """GET with the retry rules; returns a 2xx response or raises HttpProblem."""
        last = ""
        for attempt in range(1, self.retry.max_attempts + 1):
            try:
                self.requests_made += 1
                response = self.session.get(
                    url, params=params, headers=headers, timeout=self.timeout, stream=stream
                )
            except (requests.Timeout, requests.ConnectionError) as error:
                last = f"{type(error).__name__}: {error}"
                self._wait(self._backoff(attempt))
                continue
            status = response.status_code
            if status < 300:
                return response
            body = response.text[:300] if not stream else ""
            response.close()
            if status in (429, 503):
                wait = retry_after_seconds(
                    response.headers.get("Retry-After"), self._backoff(attempt)
                )
                if wait > self.retry.max_retry_after:
                    raise RetriesExhausted(
                        f"{url}: HTTP {status} asks to wait {wait:.0f}s (more than "
                        f"{self.retry.max_retry_after:.0f}s)",
                        url,
                        status,
                    )
                last = f"HTTP {status}"
                self._wait(wait)
                continue
            if status >= 500:
                last = f"HTTP {status}: {body}"
                self._wait(self._backoff(attempt))
                continue
            raise FinalHttpError(f"{url}: HTTP {status}: {body}", url, status)
        raise RetriesExhausted(
            f"{url}: gave up after {self.retry.max_attempts} attempts ({last})", url
        )

    def get_json(
        self,
        url: str,
        params: dict[str, Any],
        *,
        accept: str = "application/json",
        check: Callable[[str, str], None] | None = None,
    ) -> dict[str, Any]:
        """Serial API GET, parsed strictly. `check(text, content_type)` may raise BadResponse.
        MediaWiki's maxlag answer (HTTP 200 with error code maxlag) waits and retries."""
        with self._api_lock:
            for _ in range(self.retry.max_attempts):
                response = self.request(url, params, headers={"Accept": accept})
                content_type = response.headers.get("Content-Type", "")
                text = response.text
                if check is not None:
                    check(text, content_type)
                if "json" not in content_type:
                    raise BadResponse(
                        f"{url}: expected JSON, got {content_type or 'no content type'}: "
                        f"{text[:120]!r}",
                        url,
                        response.status_code,
                    )
                try:
                    payload = json.loads(text)
                except json.JSONDecodeError as error:
                    raise BadResponse(
                        f"{url}: malformed or cut-off JSON ({error}): ...{text[-120:]!r}", url
                    ) from error
                if not isinstance(payload, dict):
                    raise BadResponse(f"{url}: expected a JSON object", url)
                error_info = payload.get("error")
                if isinstance(error_info, dict) and error_info.get("code") == "maxlag":
                    self._wait(retry_after_seconds(response.headers.get("Retry-After"), 5.0))
                    continue
                if isinstance(error_info, dict):
                    raise FinalHttpError(
                        f"{url}: API error {error_info.get('code')}: {error_info.get('info')}", url
                    )
                return payload
            raise RetriesExhausted(
                f"{url}: still lagged after {self.retry.max_attempts} tries", url
            )

    def download(
        self, url: str, target_dir: Path, *, max_bytes: int, suffix_by_type: dict[str, str]
    ) -> Downloaded:
        """Stream `url` to `target_dir/<sha256><suffix>`: image content types only, at most
        `max_bytes`. At most two downloads run at once per session."""
        with self._downloads:
            response = self.request(url, stream=True)
            try:
                content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
                if content_type not in suffix_by_type:
                    raise NotAnImage(f"{url}: content type {content_type or 'missing'}", url)
                declared = int(response.headers.get("Content-Length") or 0)
                if declared > max_bytes:
                    raise TooLarge(f"{url}: {declared} bytes (limit {max_bytes})", url)
                target_dir.mkdir(parents=True, exist_ok=True)
                partial = target_dir / f".download-{threading.get_ident()}-{time.monotonic_ns()}"
                digest, size = hashlib.sha256(), 0
                try:
                    with partial.open("wb") as handle:
                        for block in response.iter_content(1 << 16):
                            size += len(block)
                            if size > max_bytes:
                                raise TooLarge(f"{url}: more than {max_bytes} bytes", url)
                            digest.update(block)
                            handle.write(block)
                    sha256 = digest.hexdigest()
                    target = target_dir / f"{sha256}{suffix_by_type[content_type]}"
                    partial.replace(target)
                finally:
                    partial.unlink(missing_ok=True)
            finally:
                response.close()
        return Downloaded(target, sha256, size, content_type)
