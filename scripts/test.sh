#!/usr/bin/env bash
# The whole test suite: installs what a fresh machine lacks, starts no shared service (tests
# start their own Mosquitto / servers on free ports), runs lint, types and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [[ -x /usr/sbin/mosquitto ]] || need_apt+=(mosquitto)
command -v kubectl >/dev/null 2>&1 || need_apt+=(kubernetes-client)
# the console's browser tests: Debian's Chromium and its chromedriver (Selenium downloads nothing)
[[ -x /usr/bin/chromium ]] || need_apt+=(chromium)
[[ -x /usr/bin/chromedriver ]] || need_apt+=(chromium-driver)
if ((${#need_apt[@]})); then
  echo "installing ${need_apt[*]} (apt)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}") >/dev/null \
    || echo "warning: could not install ${need_apt[*]}; the tests that need them will skip with a reason"
fi
# PostgreSQL: the registry's PostgreSQL tests use AUTOGLM_TEST_PG_URL (default the local server)
# and skip with a reason when none is reachable.
export PATH="$VENV/bin:/usr/sbin:$PATH"

echo "== ruff"; ruff check .; ruff format --check .
echo "== mypy"; mypy
echo "== pytest"
set +e
python -m pytest "$@"
rc=$?
set -e
if [[ $rc == 5 ]]; then echo "pytest collected no tests: failing"; exit 1; fi
exit $rc
