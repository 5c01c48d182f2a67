#!/usr/bin/env bash
# The whole test suite from a fresh machine: installs orch with its test extras into .venv and
# runs pytest. Later suites start sshd, Slurm and podman from their own fixtures; what they need
# from the system is installed here.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"
.venv/bin/ruff check src tests benchmarks
exec .venv/bin/python -m pytest "$@"
