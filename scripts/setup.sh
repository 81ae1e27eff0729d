#!/usr/bin/env bash
# Shared set-up of the main and test commands (sourced, not run):
#   setup_machine "apt packages" "pip extras"
# installs the missing apt packages when root on Debian, makes .venv and installs
# the package with the given extras into it.

setup_machine() {
  local packages=$1 extras=$2 missing="" p
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    for p in $packages; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
    if [ -n "$missing" ]; then
      echo "== installing apt packages:$missing"
      apt-get update -q
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
    fi
  fi
  if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv"
    "${PYTHON:-python3}" -m venv .venv
  fi
  .venv/bin/python -m pip install -q --upgrade pip
  # -qq: pip 26 forwards setuptools' boxed "Editable installation" note at -q
  .venv/bin/python -m pip install -qq -e ".[$extras]"
}
