"""The probe script of ``orch sites check`` and the parse of what it prints.

One small shell script goes to the login node on stdin and prints one section per probe, each
with its exit status (see ``orch.sites.check``); here are the script, the environment that
parametrises it, and the parse of its output into :class:`Probe` sections.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from orch.sites.config import WORK_DIR_PATTERN, Site
from orch.sites.modules import MODULE_INIT
from orch.sites.needs import SiteNeeds

PROBE_TIMEOUT = 15.0
"""Seconds one probe (sinfo, sacctmgr, ...) may take on the site before it is given up (at
most a quarter of the whole check's time): a hung slurmctld makes sinfo wait for ever."""
TIMED_OUT = (124, 137)
"""Exit statuses of a probe stopped by ``timeout``."""
GENERIC_COMMANDS = ("sbatch", "squeue", "scancel", "sacct", "enqueue_compss")
"""Looked up when no blueprint says what is needed: Slurm's job commands, and PyCOMPSs'."""
SLURM_JOB_COMMANDS = ("sbatch", "squeue", "scancel")
SGE_JOB_COMMANDS = ("qsub", "qstat", "qdel")
SGE_GENERIC_COMMANDS = (*SGE_JOB_COMMANDS, "qacct", "enqueue_compss")
"""What GENERIC_COMMANDS are on an SGE site."""

# The probes. Each `sec NAME cmd...` prints a begin line, the command's output (stderr
# included) and an end line with its exit status; $M (a random mark) keeps a command's output
# from faking a section line. Runs under /bin/sh, whatever the login shell is.
_SCRIPT = r"""
M=$ORCH_CHECK_MARK
sec() { _n=$1; shift; printf '%s begin %s\n' "$M" "$_n"; "$@" 2>&1; _r=$?
        printf '\n%s end %s %s\n' "$M" "$_n" "$_r"; }
have() { command -v "$1" >/dev/null 2>&1; }
T=; have timeout && T="timeout $ORCH_CHECK_PROBE_TIMEOUT"
hostname_() { hostname 2>/dev/null || uname -n; }
found() { command -v "$1"; }
sge_version_() { $T qstat -help 2>&1 | head -n 1; }
modules_() {
  @MODULE_INIT@
  have module || { echo "no module command"; return 127; }
  module --version 2>&1 | sed -n '/[0-9]/{p;q;}'
  set -f  # module names are words, not patterns
  for m in $ORCH_CHECK_MODULES; do
    if module is-avail "$m" >/dev/null 2>&1 || module -t avail "$m" 2>&1 | awk -v m="$m" \
        '$0==m || index($0, m "/")==1 || index($0, m "(")==1 {f=1} END {exit !f}'; then
      echo "avail $m"
    else
      echo "unavail $m"
    fi
  done
  set +f
}
workdir_() {
  d=$( set -u; eval "printf '%s' \"$ORCH_CHECK_WORKDIR\"" ) || return 3
  case $d in "~") d=$HOME ;; "~/"*) d=$HOME/${d#"~/"} ;; /*) ;; *) d=$HOME/$d ;; esac
  echo "path=$d"
  p=$d
  while [ ! -e "$p" ]; do p=$(dirname -- "$p"); done
  echo "existing=$p"
  if [ -d "$p" ] && [ -w "$p" ]; then echo writable=yes; else echo writable=no; fi
  $T df -Pk -- "$p" | tail -n 1
}
commands_() {
  set -f
  for c in $ORCH_CHECK_COMMANDS; do
    if p=$(command -v "$c" 2>/dev/null); then echo "found $c $p"; else echo "missing $c"; fi
  done
  set +f
}
loaded_() {
  @MODULE_INIT@
  printf '%s\n' "$ORCH_CHECK_LOADED" | while IFS='|' read -r mods c; do
    [ -n "$c" ] || continue
    ( set -f; l=
      if [ -n "$mods" ] && ! module load $mods >/dev/null 2>&1; then l=noload-; fi
      if p=$(command -v "$c" 2>/dev/null); then echo "${l}found $mods|$c $p"
      else echo "${l}missing $mods|$c"; fi )
  done
}
sec hostname hostname_
sec user id -un
sec system uname -srm
sec path printf '%s\n' "$PATH"
if [ "$ORCH_CHECK_SCHEDULER" = sge ]; then
  if have qstat; then
    sec qstat found qstat
    sec sge_version sge_version_
    if have qconf; then
      sec queues $T qconf -sql
      sec pes $T qconf -spl
    fi
  fi
else
  if have sinfo; then
    sec sinfo found sinfo
    sec slurm_version $T sinfo --version
    sec partitions $T sinfo -h -o '%P|%a|%D|%T|%l'
  fi
  if have sacctmgr; then
    sec associations $T sacctmgr -nP show assoc where user="$(id -un)" format=account,qos
  fi
fi
# as orch's commands find them: commands_ without the module system's start-up file (a
# command without modules is run so), loaded_ and modules_ with it (orch reads it to load them)
sec commands commands_
[ -z "$ORCH_CHECK_LOADED" ] || sec loaded loaded_
sec modules modules_
for c in apptainer singularity podman; do
  if have $c; then sec $c $T $c --version; fi
done
sec work_dir workdir_
exit 0
"""
SCRIPT = _SCRIPT.replace("@MODULE_INIT@", MODULE_INIT)

_SECTION = re.compile(r"(?P<mark>\S+) (?P<what>begin|end) (?P<name>\w+)(?: (?P<rc>-?\d+))?\Z")


@dataclass(frozen=True)
class Probe:
    """One section of the script's output."""

    output: str
    rc: int

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def first_line(self) -> str:
        return next((line.strip() for line in self.output.splitlines() if line.strip()), "")

    @property
    def last_line(self) -> str:
        """The conclusion of an error (sinfo ends with its 'fatal:' line)."""
        lines = [line.strip() for line in self.output.splitlines() if line.strip()]
        return lines[-1] if lines else ""


def probe_timeout(timeout: float) -> float:
    return max(1.0, min(PROBE_TIMEOUT, timeout / 4))


def probe_environment(
    site: Site, mark: str, timeout: float = 60.0, needs: SiteNeeds | None = None
) -> dict[str, str]:
    """The site's own variables, then the script's parameters (so PATH from sites.yaml is
    the one sinfo is looked up in): what to look up is what ``needs`` names, else sites.yaml's
    modules and the usual commands."""
    if not WORK_DIR_PATTERN.match(site.work_dir):
        raise ValueError(f"site {site.name}: work_dir {site.work_dir!r} cannot be checked")
    if needs is None:
        generic = SGE_GENERIC_COMMANDS if site.scheduler == "sge" else GENERIC_COMMANDS
        modules, commands, loaded = list(site.modules), list(generic), []
    else:
        modules, commands = needs.modules(), needs.plain_commands()
        loaded = [" ".join(after) + "|" + command for after, command in needs.loaded_commands()]
    return {
        **site.environment,
        "ORCH_CHECK_MARK": mark,
        "ORCH_CHECK_SCHEDULER": site.scheduler,
        "ORCH_CHECK_PROBE_TIMEOUT": f"{probe_timeout(timeout):g}",
        "ORCH_CHECK_MODULES": "\n".join(modules),
        "ORCH_CHECK_COMMANDS": " ".join(commands),
        "ORCH_CHECK_LOADED": "\n".join(loaded),
        "ORCH_CHECK_WORKDIR": site.work_dir,
    }


def unfinished(stdout: str, mark: str) -> str | None:
    """The section that had begun but not ended when the output stopped."""
    current = None
    for line in stdout.splitlines():
        found = _SECTION.match(line) if line.startswith(mark) else None
        if found is not None and found["mark"] == mark:
            current = found["name"] if found["what"] == "begin" else None
    return current


def parse_sections(stdout: str, mark: str) -> dict[str, Probe]:
    """The script's sections by name; lines outside sections (a chatty login) are dropped."""
    probes: dict[str, Probe] = {}
    current: str | None = None
    lines: list[str] = []
    for line in stdout.splitlines():
        found = _SECTION.match(line) if line.startswith(mark) else None
        if found is None or found["mark"] != mark:
            if current is not None:
                lines.append(line)
            continue
        if found["what"] == "begin":
            current, lines = found["name"], []
        elif current == found["name"]:
            probes[current] = Probe("\n".join(lines).strip("\n"), int(found["rc"] or 0))
            current = None
    return probes


def failure_of(probe: Probe) -> str:
    """Why a probe failed, in a few words."""
    if probe.rc in TIMED_OUT:
        return "no answer in time (the probe was stopped)"
    return probe.last_line or f"exit status {probe.rc}"
