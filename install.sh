#!/bin/sh
# Installs orch into ./.venv, a virtual environment of its own: Debian's (and Ubuntu's) Python
# refuses `pip install` into the system (PEP 668), and a fresh Debian 12 has neither pip nor
# the venv module. Those come from apt (python3-venv), with sudo unless run as root.
#
#   sh install.sh            # then: .venv/bin/orch --help
#   sh install.sh --test     # with the test tools and the serve extra (orch serve), editable
#                            # (what tests/run.sh uses)
#   sh install.sh --serve    # with the serve extra: FastAPI and uvicorn for `orch serve`
set -eu
cd "$(dirname "$0")"
extra=""
editable=""
if [ "${1:-}" = "--test" ]; then extra="[test,serve]"; editable="-e"; fi
if [ "${1:-}" = "--serve" ]; then extra="[serve]"; fi

have_venv() { command -v python3 >/dev/null 2>&1 && python3 -c 'import ensurepip, venv' 2>/dev/null; }

if ! have_venv; then
  echo "install.sh: Python 3 with its venv module is missing: installing python3-venv with apt" >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "install.sh: run as root, or install python3-venv first (apt install python3-venv)" >&2
    exit 1
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    python3 python3-venv >/dev/null
fi
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet $editable ".$extra"
echo "install.sh: orch $(.venv/bin/orch --version | sed 's/.* //') is in $(pwd)/.venv/bin" >&2
