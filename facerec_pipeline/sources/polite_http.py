"""A polite HTTP client for public APIs (Wikidata, Commons) and a paid search provider.

- A User-Agent naming the client and a contact is required; generic ones are refused.
- API requests are serial (one at a time per client); downloads at most two at a time.
- Retries are urllib3's `Retry` on the session's adapters: 429, 500, 502, 503 and 504 (waiting
  for `Retry-After` where given), timeouts and connection errors, with exponential backoff; other
  4xx and 5xx are final. Ours on top: a `Retry-After` beyond the policy's cap fails the request
  instead of being waited or shortened, every attempt and wait is counted, and MediaWiki's
  `maxlag` answer (HTTP 200 whose JSON says the replicas lag) waits and retries.
- JSON is parsed strictly: a wrong content type or cut-off body is an error, never "no results".
No Dagster here.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.exceptions import ChunkedEncodingError, RetryError
from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry

GENERIC_AGENT = re.compile(r"^(python-requests|python-urllib|curl|wget|mozilla|java|go-http)", re.I)
CONTACT = re.compile(r"\(([^)]*(@|https?://)[^)]*)\)")
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


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
    """Attempts per request; urllib3's backoff (none before the first retry, then
    backoff_base * 2**(n-1) plus up to backoff_base of jitter, at most backoff_cap)."""

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
    """A Retry-After value (seconds or an HTTP date) read by urllib3; `default` when absent or
    unreadable."""
    if not value:
        return default
    try:
        return Retry().parse_retry_after(value)
    except InvalidHeader:
        return default


class _WaitTooLong(Exception):
    def __init__(self, status: int, retry_after: str):
        super().__init__(f"HTTP {status} asks to wait {retry_after}s")
        self.status = status
        self.retry_after = retry_after


class _PoliteRetry(Retry):
    """urllib3's Retry whose waits go through `pause` (the session counts each further attempt
    and the time waited; tests record waits instead of sleeping). A Retry-After beyond
    `give_up_beyond` seconds fails the request: urllib3 would wait it, shortened to its
    retry_after_max, hammering a server that asked for a long rest."""

    def __init__(
        self,
        *args: Any,
        pause: Callable[[float], None] = time.sleep,
        give_up_beyond: float = 300.0,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.pause = pause
        self.give_up_beyond = give_up_beyond

    def new(self, **kw: Any) -> _PoliteRetry:
        return super().new(pause=self.pause, give_up_beyond=self.give_up_beyond, **kw)

    def sleep(self, response: Any = None) -> None:
        wait = None
        if response is not None and self.respect_retry_after_header:
            try:
                wait = self.get_retry_after(response)
            except InvalidHeader:  # unreadable: back off as without one
                wait = None
            if wait is not None and wait > self.give_up_beyond:
                raise _WaitTooLong(response.status, response.headers["Retry-After"])
        self.pause(self.get_backoff_time() if wait is None else wait)


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
        adapter = HTTPAdapter(
            max_retries=_PoliteRetry(
                total=retry.max_attempts - 1,
                status_forcelist=RETRY_STATUSES,
                respect_retry_after_header=True,
                backoff_factor=retry.backoff_base,
                backoff_jitter=retry.backoff_base,
                backoff_max=retry.backoff_cap,
                raise_on_status=False,  # the last answer comes back, its body for the message
                pause=self._next_attempt,
                give_up_beyond=retry.max_retry_after,
            )
        )
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self._api_lock = threading.Lock()
        self._downloads = threading.BoundedSemaphore(max_concurrent_downloads)
        self.requests_made = 0
        self.waited_seconds = 0.0

    def _wait(self, seconds: float) -> None:
        self.waited_seconds += seconds
        self.sleep(seconds)

    def _next_attempt(self, wait: float) -> None:
        """urllib3 retries after `wait` seconds."""
        self.requests_made += 1
        if wait > 0:
            self._wait(wait)

    def request(
        self,
        url: str,
        params: dict[str, Any] | None = None,
        *,
        stream: bool = False,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """GET with the retry rules; returns a 2xx response or raises HttpProblem."""
        gave_up = f"{url}: gave up after {self.retry.max_attempts} attempts"
        self.requests_made += 1
        try:
            response = self.session.get(
                url, params=params, headers=headers, timeout=self.timeout, stream=stream
            )
        except _WaitTooLong as too_long:
            raise RetriesExhausted(
                f"{url}: {too_long} (more than {self.retry.max_retry_after:.0f}s)",
                url,
                too_long.status,
            ) from None
        except ChunkedEncodingError as error:
            raise BadResponse(f"{url}: cut-off body ({error})", url) from error
        except (requests.Timeout, requests.ConnectionError, RetryError) as error:
            raise RetriesExhausted(f"{gave_up} ({type(error).__name__}: {error})", url) from error
        status = response.status_code
        if status < 300:
            return response
        body = response.text[:300] if not stream else ""
        response.close()
        if status in RETRY_STATUSES:
            raise RetriesExhausted(f"{gave_up} (HTTP {status}: {body})", url, status)
        raise FinalHttpError(f"{url}: HTTP {status}: {body}", url, status)

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
                except ChunkedEncodingError as error:
                    raise BadResponse(f"{url}: cut-off body ({error})", url) from error
                finally:
                    partial.unlink(missing_ok=True)
            finally:
                response.close()
        return Downloaded(target, sha256, size, content_type)
