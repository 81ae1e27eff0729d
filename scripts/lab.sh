#!/usr/bin/env bash
# The README's first command: set up a fresh Debian machine, start a local
# registry and Docker engine, seed demo images, and open JupyterLab on the tour.
# Run from anywhere; as root it installs the apt packages it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/setup.sh
. scripts/setup.sh
setup_machine "docker.io docker-registry skopeo busybox-static apache2-utils" "lab"

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
