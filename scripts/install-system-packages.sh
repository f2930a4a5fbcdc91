#!/usr/bin/env bash
# The Debian packages the test suite runs for real, installed only when missing:
# - `postgresql` (initdb, pg_ctl, pg_dump, pg_restore, psql): the PostgreSQL tests start a
#   throwaway server from it;
# - `chromium`: the page at `/` is tested in it, headless (Playwright drives it and downloads no
#   browser of its own);
# - `redis-server`: the Celery broker of the distributed tests (test_distributed.py starts one).
set -euo pipefail
missing=()
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v pg_dump >/dev/null; then
    missing+=(postgresql)
fi
if ! command -v chromium >/dev/null; then
    missing+=(chromium)
fi
if ! command -v redis-server >/dev/null && [ ! -x /usr/bin/redis-server ]; then
    missing+=(redis-server)
fi
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "installing Debian packages the tests need: ${missing[*]}"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
