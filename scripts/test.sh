#!/usr/bin/env bash
# The README's test command: set up a fresh Debian machine, start the test
# services, run the whole suite, stop the services. Run from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/setup.sh
. scripts/setup.sh
setup_machine "docker.io docker-registry skopeo umoci podman busybox-static apache2-utils chromium" "test,lab"

export REGISTRY_NB_STATE=${REGISTRY_NB_STATE:-/tmp/registry-nb-services}
echo "== starting test services in $REGISTRY_NB_STATE"
.venv/bin/python scripts/services.py start
trap '.venv/bin/python scripts/services.py stop' EXIT
eval "$(.venv/bin/python scripts/services.py env)"

echo "== seeding the demo images the notebooks use"
export REGISTRY_NB_DEMO_REGISTRY="$REGISTRY_NB_OPEN"
.venv/bin/registry-nb seed "$REGISTRY_NB_DEMO_REGISTRY" >/dev/null

echo "== ruff"
.venv/bin/ruff check .

echo "== pytest (tests, and the notebooks with nbval)"
.venv/bin/python -m pytest -p no:cacheprovider --nbval-lax --ignore=tests/notebooks \
  tests notebooks "$@"
