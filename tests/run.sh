#!/usr/bin/env bash
# The whole test suite from a fresh machine: installs what the integration tests start (an
# OpenSSH server, Slurm with munge, podman and Apptainer for image builds, Lmod for EasyBuild),
# orch with its test and serve extras (EasyBuild among them) into .venv, then runs ruff and pytest. The
# fixtures start and stop the servers themselves, on 127.0.0.1, in temporary folders.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v /usr/sbin/sshd >/dev/null || need+=(openssh-server)
command -v ssh-keygen >/dev/null || need+=(openssh-client)
command -v /usr/sbin/slurmctld >/dev/null || need+=(slurmctld)
command -v /usr/sbin/slurmd >/dev/null || need+=(slurmd)
command -v sbatch >/dev/null || need+=(slurm-client)
command -v /usr/sbin/munged >/dev/null || need+=(munge)
# Slurm accounting (sacct) for tests/test_slurm_accounting.py: slurmdbd and a MariaDB the
# fixture starts in its own temporary folder (the stock service is never started)
command -v /usr/sbin/slurmdbd >/dev/null || need+=(slurmdbd)
command -v /usr/sbin/mariadbd >/dev/null || need+=(mariadb-server)
# container image builds: podman (runc, buildah) and a static busybox to put in test images;
# debootstrap and bubblewrap to install Apptainer below
command -v podman >/dev/null || need+=(podman)
command -v buildah >/dev/null || need+=(buildah)
command -v runc >/dev/null || need+=(runc)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
command -v /usr/sbin/debootstrap >/dev/null || need+=(debootstrap)
command -v bwrap >/dev/null || need+=(bubblewrap)
# EasyBuild's modules tool (eb itself comes with the test extra, from PyPI), and gcc with a
# static libc for the toy easyconfig of tests/test_easybuild.py
[ -f /usr/share/lmod/lmod/init/bash ] || need+=(lmod)
command -v gcc >/dev/null || need+=(gcc)
command -v make >/dev/null || need+=(make)
dpkg -s libc6-dev >/dev/null 2>&1 || need+=(libc6-dev)
# Son of Grid Engine 8.1.9 (qmaster, execd, q* clients) for tests/sites/sge.py, which sets up its
# own SGE_ROOT: the preseed below keeps the packages from initialising a stock cluster
command -v /usr/lib/gridengine/sge_qmaster >/dev/null || need+=(gridengine-master)
command -v /usr/lib/gridengine/sge_execd >/dev/null || need+=(gridengine-exec)
command -v /usr/lib/gridengine/qsub >/dev/null || need+=(gridengine-client)
# Open MPI's mpirun: an MPI job's ranks on the SGE site (SGE has no srun)
command -v mpirun >/dev/null || need+=(openmpi-bin)
# the browser test of orch serve's web page: Debian's Chromium and its matching chromedriver
# (Selenium drives it; nothing is downloaded at test time)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
dpkg -s fonts-liberation >/dev/null 2>&1 || need+=(fonts-liberation)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    # keep apt from starting the stock daemons: the tests start their own
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    echo 'gridengine-common shared/gridengineconfig boolean false' | debconf-set-selections
    # quiet (debconf's notes go to stderr) unless it fails
    log=$(mktemp)
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
      >"$log" 2>&1 || { cat "$log" >&2; rm -f "$log"; exit 1; }
    rm -f "$log"
  else
    echo "tests/run.sh: missing ${need[*]}; install them (as root) or the SSH/Slurm/image tests" \
      "will skip" >&2
  fi
fi
# Apptainer has no Debian 12 package: tests/sites/apptainer_sid.sh installs one into
# $ORCH_TEST_SITES (where tests/sites/apptainer.py looks). Without it only those tests skip.
sites=${ORCH_TEST_SITES:-/opt/orch-sites}
if ! command -v apptainer >/dev/null && [ ! -x "$sites/bin/apptainer" ]; then
  if [ "$(id -u)" = 0 ]; then
    log=$(mktemp)
    if ORCH_TEST_SITES="$sites" bash tests/sites/apptainer_sid.sh install >"$log" 2>&1; then
      rm -f "$log"
    else
      cat "$log" >&2; rm -f "$log"
      echo "tests/run.sh: *** installing Apptainer into $sites FAILED (output above):" \
        "the Apptainer tests will be SKIPPED ***" >&2
    fi
  else
    echo "tests/run.sh: *** Apptainer is not installed and installing it needs root:" \
      "the Apptainer tests will be SKIPPED ***" >&2
  fi
fi
# orch with its test tools and the serve extra (FastAPI, uvicorn, httpx: tests/test_serve.py)
# into .venv (install.sh also gets python3-venv when it is missing)
sh install.sh --test
.venv/bin/ruff check src tests benchmarks
exec .venv/bin/python -m pytest "$@"
