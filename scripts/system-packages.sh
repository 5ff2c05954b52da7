#!/usr/bin/env bash
# Install the Debian packages the test suite needs but pip cannot provide, only when missing.
#
# tinyproxy: the real forward HTTP proxy of tests/network (proxy and CONNECT-tunnel tests).
# postgresql and redis-server: the distributed deployment (tests/distributed): a private Postgres
# cluster (initdb/pg_ctl) as the metadata database, and Redis servers for Celery and the rate budget.
# chromium and chromium-driver: the gallery's browser test (tests/deployment/test_gallery_browser.py),
# headless chromium driven by Selenium through /usr/bin/chromedriver.
# Runs `apt-get update` once, then `apt-get install -y --no-install-recommends`, and only when a
# needed command is absent, so a prepared machine pays nothing. Needs root to install; without
# root and with something missing it says what to run, and exits 1 only when CI=true. The
# packages' own system services are never used (the tests start private instances), and Debian
# does not start them in containers without an init system.
#
# Usage: bash scripts/system-packages.sh    (as root, e.g. from `make test` or .ci/run)
set -euo pipefail

# "command package" pairs: a command the tests run and the Debian package that provides it.
REQUIRED=(
    "tinyproxy tinyproxy"
    "redis-server redis-server"
    "initdb postgresql"
    "chromium chromium"
    "chromedriver chromium-driver"
)

have() {
    # Debian keeps the Postgres server programs out of PATH, under /usr/lib/postgresql/<major>/bin.
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ] ||
        compgen -G "/usr/lib/postgresql/*/bin/$1" >/dev/null
}

missing=()
for pair in "${REQUIRED[@]}"; do
    read -r cmd package <<<"$pair"
    if ! have "$cmd"; then
        missing+=("$package")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "system-packages.sh: missing Debian packages: ${missing[*]}" >&2
    echo "  install them as root: sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    echo "  (or run: sudo bash scripts/system-packages.sh)" >&2
    # Outside CI the suite goes on: the tests that need a missing program say so (the distributed
    # ones are skipped with the reason). In CI (CI=true) nothing may be skipped for want of a package.
    if [ "${CI:-}" = "true" ]; then
        exit 1
    fi
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "system-packages.sh: apt-get not found; install ${missing[*]} with this system's package manager" >&2
    exit 1
fi

echo "system-packages.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
