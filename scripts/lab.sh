#!/usr/bin/env bash
# The README's first command: set up a fresh Debian machine, start a local
# registry and Docker engine, seed demo images, and open JupyterLab on the tour.
# Run from anywhere; as root it installs the apt packages it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="docker.io docker-registry skopeo busybox-static apache2-utils"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=""
  for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    echo "== installing apt packages:$missing"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[lab]'

export REGISTRY_NB_STATE=${REGISTRY_NB_STATE:-/tmp/registry-nb-services}
echo "== starting the local registry and Docker engine ($REGISTRY_NB_STATE)"
if command -v dockerd >/dev/null; then
  .venv/bin/python scripts/services.py start open docker
else
  echo "(no dockerd here: the forms will show their simulated state)"
  .venv/bin/python scripts/services.py start open
fi
eval "$(.venv/bin/python scripts/services.py env)"
export REGISTRY_NB_DEMO_REGISTRY="$REGISTRY_NB_OPEN"

echo "== seeding demo images into $REGISTRY_NB_DEMO_REGISTRY"
.venv/bin/registry-nb seed "$REGISTRY_NB_DEMO_REGISTRY"

echo "== JupyterLab (stop with Ctrl-C; stop the services with: .venv/bin/python scripts/services.py stop)"
exec .venv/bin/registry-nb lab --notebook notebooks/01-registry-tour.ipynb \
  --port "${REGISTRY_NB_LAB_PORT:-8888}"
