#!/usr/bin/env bash
# The README's first command: set up a fresh Debian machine, start a local
# registry and Docker engine, seed demo images, and open JupyterLab on the tour.
# Run from anywhere; as root it installs the apt packages it needs.
# Everything listens on 127.0.0.1 (the engine on a unix socket). Ctrl-C stops
# JupyterLab; the registry and the engine keep running until
# `scripts/services.py stop` (the last lines printed say how, and how a new
# terminal reaches them).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

# shellcheck source=scripts/setup.sh
. scripts/setup.sh
setup_machine "docker.io docker-registry skopeo busybox-static apache2-utils" "lab"
# no "Jupyter news?" toast, no news or update requests (settings overrides in .venv only)
.venv/bin/python scripts/quiet_jupyterlab.py

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
if [ -n "${DOCKER_HOST:-}" ] && ! .venv/bin/python -c 'import docker; docker.from_env().ping()' \
    >/dev/null 2>&1; then
  unset DOCKER_HOST
fi

echo "== seeding demo images into $REGISTRY_NB_DEMO_REGISTRY"
.venv/bin/registry-nb seed "$REGISTRY_NB_DEMO_REGISTRY"

echo "== starting JupyterLab"
LAB_LOG="$REGISTRY_NB_STATE/jupyterlab.log"
export JUPYTER_TOKEN=${JUPYTER_TOKEN:-$(.venv/bin/python -c 'import secrets; print(secrets.token_hex(24))')}
# stdin from /dev/null: Ctrl-C reaches JupyterLab as our SIGTERM, not as its y/n prompt
.venv/bin/registry-nb lab --notebook notebooks/01-registry-tour.ipynb \
  --port "${REGISTRY_NB_LAB_PORT:-8888}" </dev/null >"$LAB_LOG" 2>&1 &
LAB_PID=$!
stop_lab() { kill -TERM "$LAB_PID" 2>/dev/null || true; }
trap stop_lab INT TERM
trap stop_lab EXIT

# JupyterLab writes jpserver-<pid>.json (its real port and URL) once it listens
SERVER_INFO="$(.venv/bin/jupyter --runtime-dir)/jpserver-$LAB_PID.json"
for _ in $(seq 1 240); do
  [ -s "$SERVER_INFO" ] && break
  if ! kill -0 "$LAB_PID" 2>/dev/null; then
    echo "JupyterLab exited before it listened; its log ($LAB_LOG):"
    cat "$LAB_LOG"
    exit 1
  fi
  sleep 0.5
done
if [ ! -s "$SERVER_INFO" ]; then
  echo "JupyterLab did not start within 120 s; its log ($LAB_LOG):"
  tail -n 40 "$LAB_LOG"
  exit 1
fi
LAB_PORT=$(.venv/bin/python -c 'import json, sys; print(json.load(open(sys.argv[1]))["port"])' \
  "$SERVER_INFO")
LAB_URL="http://127.0.0.1:$LAB_PORT/lab/tree/notebooks/01-registry-tour.ipynb?token=$JUPYTER_TOKEN"

STATE_PREFIX="" STATE_EXPORT=""
if [ "$REGISTRY_NB_STATE" != /tmp/registry-nb-services ]; then
  STATE_PREFIX="REGISTRY_NB_STATE=$(printf %q "$REGISTRY_NB_STATE") "
  STATE_EXPORT="  export ${STATE_PREFIX% }
"
fi
cat <<EOF

== ready: everything listens on 127.0.0.1 only
  JupyterLab     $LAB_URL
                 (log: $LAB_LOG)
  registry       http://$REGISTRY_NB_OPEN  (CNCF distribution, no auth; demo/hello, demo/big, demo/app, demo/multiarch)
EOF
if [ -n "${DOCKER_HOST:-}" ]; then
  echo "  Docker engine  $DOCKER_HOST  (its own dockerd; builds run without network)"
else
  echo "  Docker engine  none (no dockerd here): push, pull and build return status 'simulated'"
fi
cat <<EOF

In a new terminal, reach the engine and the registry with:
${STATE_EXPORT}  eval "\$($ROOT/.venv/bin/python $ROOT/scripts/services.py env)"
  (sets DOCKER_HOST=${DOCKER_HOST:-…} and REGISTRY_NB_OPEN=$REGISTRY_NB_OPEN), then e.g.
  $ROOT/.venv/bin/registry-nb ls $REGISTRY_NB_OPEN

To stop: Ctrl-C here stops JupyterLab; then stop the registry and the engine with:
  ${STATE_PREFIX}$ROOT/.venv/bin/python $ROOT/scripts/services.py stop
EOF

set +e
wait "$LAB_PID"
wait "$LAB_PID" 2>/dev/null  # a signal interrupts the first wait; this one sees the exit
trap - EXIT
echo
echo "JupyterLab stopped. The registry and the engine are still running; stop them with:"
echo "  ${STATE_PREFIX}$ROOT/.venv/bin/python $ROOT/scripts/services.py stop"
