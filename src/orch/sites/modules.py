"""The module system of a site (Lmod, Environment Modules) as orch's shell commands see it."""

MODULE_INIT = (
    "if ! command -v module >/dev/null 2>&1; then for f in "
    '${LMOD_PKG:+"$LMOD_PKG/init/sh"} ${MODULESHOME:+"$MODULESHOME/init/sh"} '
    "/usr/share/lmod/lmod/init/sh /usr/share/modules/init/sh /etc/profile.d/lmod.sh "
    '/etc/profile.d/modules.sh; do if [ -r "$f" ] && . "$f" >/dev/null 2>&1 && '
    "command -v module >/dev/null 2>&1; then break; fi; done; fi"
)
"""Defines ``module`` where only a login shell would have it: Lmod and Environment Modules
make it a shell function in their start-up files, which orch's non-login ``/bin/sh`` (and a
batch script) never reads. Safe under ``set -e``; ``sites check`` probes with the same lines."""
