#!/usr/bin/env bash
# The whole test suite: installs what a fresh machine lacks, starts no shared service but the
# machine's own PostgreSQL should it have stopped (tests start their own Mosquitto / servers on
# free ports), runs lint, types and pytest.
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
# PostgreSQL: the tests marked postgres use AUTOGLM_TEST_PG_URL (default the local server) and skip
# with a reason when none is reachable. The machine starts its local server before a session (and
# CI); should it have stopped, start it again the machine's way, and say so when it stays down.
if [[ -z ${AUTOGLM_TEST_PG_URL:-} ]] && command -v pg_isready >/dev/null 2>&1 \
  && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [[ -d /etc/postgresql ]]; then
    echo "starting the local PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start >/dev/null 2>&1 || true
  fi
  pg_isready -q -h 127.0.0.1 -p 5432 -t 15 \
    || echo "warning: no PostgreSQL at 127.0.0.1:5432; the postgres tests will skip with a reason"
fi
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
