"""A real single-node Son of Grid Engine (Debian's gridengine 8.1.9) on this machine, and its
login node, for the SGE executor tests.

``SgeCluster`` sets up its own SGE_ROOT under ``root`` (the way init_cluster/inst_sge do, but
with classic flat-file spooling and nothing under /var/lib/gridengine), starts sge_qmaster and
one sge_execd on free ports, and adds a queue ``all.q`` with ``slots`` slots and a parallel
environment ``mpi``. The scheduler runs every second and on every submit and finish, so an
instant job ends ~1 s after qsub.

Facts this relies on (tried in ../shared/sites/sge/):

- Debian's real programs are /usr/lib/gridengine/*; ``$SGE_ROOT/bin/<arch>`` links there, as
  on a site where SGE lives in SGE_ROOT. /usr/bin/q* are wrappers that keep SGE_ROOT/SGE_CELL
  from the environment, so both work.
- This host is ``localhost``, ``vm``, ``runsc`` ... on 127.0.0.1: qmaster reverse-resolves peers
  to ``localhost`` while clients announce ``hostname``, so ``act_qmaster`` is ``localhost`` and
  ``host_aliases`` maps every name to it (without it qconf hangs).
- The daemons listen on 0.0.0.0 (8.1.9 has no bind option): only the ports are this cluster's.
- Jobs of uids < ``min_uid`` are refused at submit; here min_uid is 0 so root may submit too.
- Every user that submits must read SGE_ROOT, so ``root`` is made 0755 (not pytest's tmp dirs).
- ``qstat`` lists only the caller's jobs unless ``-u '*'``; finished jobs are in ``qacct`` about
  a second after they leave qstat (accounting flush_time 1 s).
- An unwritable ``-o`` leaves the job in ``Eqw`` until qdel.
- execd tags each job's processes with a group id from ``gid_range`` and kills all processes
  with that id when the job ends: each cluster gets its own range (see ``gid_range``).
- Stopping execd leaves running jobs alive: ``stop()`` deletes every job (``qdel -f``) first,
  kills what shepherds remain, and kills qmaster (a clean TERM takes ~8 s; the state is
  thrown away anyway).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orch.executors.base import Host
from orch.transport.base import HostKeyPolicy
from sites.sshd import SSHD, SshServer, free_port

LIB = Path("/usr/lib/gridengine")
UTIL = Path("/usr/share/gridengine/util")
DAEMONS = ("sge_qmaster", "sge_execd")
CLIENTS = ("qsub", "qstat", "qacct", "qdel", "qconf")
PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
INSTALL = (
    "echo 'gridengine-common shared/gridengineconfig boolean false' | debconf-set-selections && "
    "apt-get install -y --no-install-recommends gridengine-master gridengine-exec "
    "gridengine-client (tests/run.sh does it)"
)
HOST = "localhost"  # the one SGE host name; host_aliases maps this machine's other names to it


def missing_binaries() -> list[str]:
    """The SGE programs this machine lacks (empty when a cluster can start)."""
    names = (*DAEMONS, *CLIENTS, "spoolinit", "spooldefaults")
    missing = [str(LIB / name) for name in names if not os.access(LIB / name, os.X_OK)]
    if not os.access(UTIL / "arch", os.X_OK):
        missing.append(str(UTIL / "arch"))
    return missing


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, which pid 1 here reaps late, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


class SgeError(RuntimeError):
    """The cluster did not come up (the message carries the daemons' log tails)."""


class SgeCluster:
    """sge_qmaster + one sge_execd; SGE_ROOT, spools and logs under ``root`` (made 0755)."""

    def __init__(self, root: Path, name: str = "sge1", *, slots: int = 2, cell: str = "default"):
        self.root = Path(root)
        self.name = name
        self.slots = slots
        self.cell = cell
        self.sge_root = self.root / "root"
        self.common = self.sge_root / cell / "common"
        self.qmaster_spool = self.root / "qmaster"
        self.execd_spool = self.root / "execd"
        self.host = HOST
        self.qmaster_port = 0
        self.execd_port = 0
        self.env: dict[str, str] = {}
        self.startup_seconds: float | None = None
        self._started = False

    # -- set-up -----------------------------------------------------------------------------

    @property
    def gid_range(self) -> str:
        """The extra group ids execd tags job processes with, its own per cluster.

        execd kills every process carrying a finished or deleted job's group id: two clusters
        on one machine sharing a range (the default 65400-65500) kill each other's jobs
        (qacct: failed 100 'assumedly after job', exit_status 137). The qmaster port is this
        cluster's alone while it runs, so the range is derived from it.
        """
        base = 100_000 + self.qmaster_port * 8
        return f"{base}-{base + 7}"

    @property
    def bin_dir(self) -> Path:
        arch = subprocess.run([str(UTIL / "arch")], capture_output=True, text=True, check=True)
        return self.sge_root / "bin" / arch.stdout.strip()

    def _layout(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)
        for path in (self.common, self.qmaster_spool, self.execd_spool, self.root / "tmp"):
            path.mkdir(parents=True)
        for sub in ("bin", "utilbin", "lib"):
            (self.sge_root / sub).mkdir()
        for path in (self.root, self.sge_root, self.sge_root / self.cell, self.common,
                     self.execd_spool):
            path.chmod(0o755)
        (self.root / "tmp").chmod(0o1777)
        arch = self.bin_dir.name
        for sub in ("bin", "utilbin", "lib"):
            (self.sge_root / sub / arch).symlink_to(LIB)
        (self.sge_root / "util").symlink_to(UTIL)
        (self.common / "act_qmaster").write_text(f"{HOST}\n")
        names = [HOST, socket.gethostname(), socket.getfqdn(), "127.0.0.1"]
        (self.common / "host_aliases").write_text(" ".join(dict.fromkeys(names)) + "\n")
        spooling = f"{self.common};{self.qmaster_spool}"
        (self.common / "bootstrap").write_text(_lines(
            "# Version: 8.1.9",
            "admin_user none",
            "default_domain none",
            "ignore_fqdn true",
            "spooling_method classic",
            "spooling_lib libspoolc",
            f"spooling_params {spooling}",
            "binary_path /usr/sbin",
            f"qmaster_spool_dir {self.qmaster_spool}",
            "security_mode none",
            "listener_threads 2",
            "worker_threads 2",
            "scheduler_threads 1",
            "jvm_threads 0",
        ))
        global_conf = self.root / "global.conf"
        global_conf.write_text(_lines(*GLOBAL_CONF, f"execd_spool_dir {self.execd_spool}",
                                      f"gid_range {self.gid_range}"))
        resources = UTIL / "resources"
        for argv in (
            ["spoolinit", "classic", "libspoolc", spooling, "init"],
            ["spooldefaults", "configuration", str(global_conf)],
            ["spooldefaults", "complexes", str(resources / "centry")],
            ["spooldefaults", "usersets", str(resources / "usersets")],
            ["spooldefaults", "managers", "root"],
            ["spooldefaults", "operators", "root"],
        ):
            result = self.run(*argv, check=False)
            if result.returncode != 0:
                raise SgeError(f"{' '.join(argv)} exited {result.returncode}: "
                               f"{result.stdout}{result.stderr}")

    def _configure(self) -> None:
        """Scheduler, PE 'mpi', the exec host, @allhosts and all.q (qmaster is up)."""
        cfg = self.root / "cfg"
        cfg.mkdir(exist_ok=True)
        tmpdir = self.root / "tmp"
        steps: list[tuple[str, str, list[str]]] = [
            ("-as", "", [HOST]),
            ("-Msconf", "sconf", SCHEDULER_CONF),
            ("-Ap", "pe", PE_MPI),
            ("-Ae", "exechost", [f"hostname {HOST}", *EXEC_HOST]),
            ("-Ahgrp", "hgrp", ["group_name @allhosts", f"hostlist {HOST}"]),
            ("-Aq", "queue", [*QUEUE, f"slots {self.slots}", f"tmpdir {tmpdir}"]),
        ]
        for option, file_name, lines in steps:
            if file_name:
                path = cfg / file_name
                path.write_text(_lines(*lines))
                args = [str(path)]
            else:
                args = lines
            result = self.run("qconf", option, *args, check=False, timeout=15)
            if result.returncode != 0:
                raise SgeError(f"qconf {option} exited {result.returncode}: "
                               f"{result.stdout}{result.stderr}\n{self.logs()}")

    def start(self, timeout: float = 30.0) -> None:
        """Set SGE_ROOT up anew, start qmaster and execd; return once the queue is usable."""
        began = time.monotonic()
        self.qmaster_port = free_port()
        self.execd_port = free_port()
        while self.execd_port == self.qmaster_port:
            self.execd_port = free_port()
        self.env = {
            "SGE_ROOT": str(self.sge_root),
            "SGE_CELL": self.cell,
            "SGE_QMASTER_PORT": str(self.qmaster_port),
            "SGE_EXECD_PORT": str(self.execd_port),
            "PATH": f"{self.bin_dir}:{PATH}",
        }
        self._started = True
        try:
            self._layout()
            self._daemon("sge_qmaster")
            self._wait(lambda: self.run("qconf", "-sh", check=False, timeout=5).returncode == 0,
                       timeout, "qmaster answering qconf")
            self._configure()
            self._daemon("sge_execd")
            self._wait(lambda: self.queue_state() == "", timeout, "queue all.q up")
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def _daemon(self, name: str) -> None:
        """Start a daemon; it forks into the background and writes its pid file."""
        with open(self.root / f"{name}.out", "ab") as out:
            result = subprocess.run(
                [str(LIB / name)], cwd=self.root, env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, timeout=30,
            )
        if result.returncode != 0:
            raise SgeError(f"{name} exited {result.returncode}\n{self.logs()}")

    def _wait(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.05
        while not ready():
            if time.monotonic() > deadline:
                raise SgeError(f"{what}: not after {timeout} s\n{self.logs()}")
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    @property
    def qmaster_pid_file(self) -> Path:
        return self.qmaster_spool / "qmaster.pid"

    @property
    def execd_pid_file(self) -> Path:
        return self.execd_spool / HOST / "execd.pid"

    def pids(self) -> dict[str, int]:
        """The running daemons' pids by name."""
        found = {}
        for name, path in (("sge_qmaster", self.qmaster_pid_file),
                           ("sge_execd", self.execd_pid_file)):
            with contextlib.suppress(OSError, ValueError):
                pid = int(path.read_text().strip())
                if _alive(pid):
                    found[name] = pid
        return found

    def logs(self, lines: int = 20) -> str:
        """The last lines of each daemon's messages file, for error messages."""
        parts = []
        for path in (self.qmaster_spool / "messages", self.execd_spool / HOST / "messages",
                     *sorted(self.root.glob("*.out"))):
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path}\n" + "\n".join(tail))
        return "\n".join(parts)

    # -- use --------------------------------------------------------------------------------

    def run(
        self, *cmd: str, check: bool = True, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a client command (qsub, qstat, qconf ...) as root against this cluster."""
        return subprocess.run(
            [str(LIB / cmd[0]) if (LIB / cmd[0]).exists() else cmd[0], *cmd[1:]],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    def queue_state(self) -> str | None:
        """State letters of all.q@localhost ('' when usable, 'u' unknown); None if not known."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            result = self.run("qstat", "-f", "-q", f"all.q@{HOST}", check=False, timeout=5)
            for line in result.stdout.splitlines():
                fields = line.split()
                if fields and fields[0] == f"all.q@{HOST}":
                    return fields[5] if len(fields) > 5 else ""
        return None

    def job_ids(self) -> list[str]:
        """Ids of every user's jobs qmaster still holds (pending, running or in error)."""
        result = self.run("qstat", "-u", "*", check=False, timeout=10)
        ids = []
        for line in result.stdout.splitlines():
            first = line.split()[:1]
            if first and first[0].isdigit():
                ids.append(first[0])
        return ids

    def stop_qmaster(self) -> None:
        """Kill qmaster alone (a master host failing): execd and its jobs go on."""
        pid = self.pids().get("sge_qmaster")
        if pid is not None:
            _terminate(pid, 0.0)
        self._wait(lambda: "sge_qmaster" not in self.pids(), 10, "qmaster gone")

    def start_qmaster(self, timeout: float = 30.0) -> None:
        """Start qmaster again on the same spool (its jobs are still there) and wait until the
        queue is usable."""
        self._daemon("sge_qmaster")
        self._wait(lambda: self.run("qconf", "-sh", check=False, timeout=5).returncode == 0,
                   timeout, "qmaster answering qconf again")
        self._wait(lambda: self.queue_state() == "", timeout, "queue all.q up again")

    # -- tear-down --------------------------------------------------------------------------

    def stop(self, timeout: float = 10.0) -> None:
        """Delete every job, then end execd (and any shepherd left) and qmaster."""
        if not self._started:
            return
        pids = self.pids()
        if "sge_qmaster" in pids:
            with contextlib.suppress(subprocess.TimeoutExpired):
                if self.job_ids():
                    self.run("qdel", "-f", "-u", "*", check=False, timeout=10)
                    deadline = time.monotonic() + timeout
                    while self.job_ids() and time.monotonic() < deadline:
                        time.sleep(0.1)
        execd = pids.get("sge_execd")
        shepherds: list[int] = []
        if execd is not None:
            deadline = time.monotonic() + 5
            while (shepherds := _children(execd)) and time.monotonic() < deadline:
                time.sleep(0.1)
            _terminate(execd, 5.0)
        for shepherd in shepherds:
            for job in _children(shepherd):
                # a job runs in its own process group, led by the shepherd's child
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(job, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(shepherd, signal.SIGKILL)
        qmaster = pids.get("sge_qmaster")
        if qmaster is not None:
            _terminate(qmaster, 1.0)
        self._started = False


def _terminate(pid: int, grace: float) -> None:
    """TERM, then KILL after ``grace`` seconds; return once the process is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


def _lines(*lines: str) -> str:
    return "\n".join(lines) + "\n"


GLOBAL_CONF = [
    "conf_version 0",
    "mailer /bin/true",
    "xterm /usr/bin/xterm",
    "load_sensor none",
    "prolog none",
    "epilog none",
    "shell_start_mode unix_behavior",
    "login_shells bash,sh,ksh,csh,tcsh",
    # Debian's default is 1000: root's jobs would be refused at submit
    "min_uid 0",
    "min_gid 0",
    "user_lists none",
    "xuser_lists none",
    "projects none",
    "xprojects none",
    "enforce_project false",
    "enforce_user auto",
    "load_report_time 00:00:05",
    "max_unheard 00:05:00",
    "reschedule_unknown 00:00:00",
    "loglevel log_info",
    "administrator_mail none",
    "set_token_cmd none",
    "pag_cmd none",
    "token_extend_time none",
    "shepherd_cmd none",
    "qmaster_params none",
    "execd_params none",
    "reporting_params accounting=true reporting=false flush_time=00:00:01 joblog=false "
    "sharelog=00:00:00",
    "finished_jobs 100",
    "qlogin_command builtin",
    "qlogin_daemon builtin",
    "rlogin_command builtin",
    "rlogin_daemon builtin",
    "rsh_command builtin",
    "rsh_daemon builtin",
    "max_aj_instances 2000",
    "max_aj_tasks 75000",
    "max_u_jobs 0",
    "max_jobs 0",
    "auto_user_oticket 0",
    "auto_user_fshare 0",
    "auto_user_default_project none",
    "auto_user_delete_time 86400",
    "delegated_file_staging false",
    "reprioritize 0",
    "jsv_url none",
    "jsv_allowed_mod ac,h,i,e,o,j,M,N,p,w",
]

# schedule every second and on each submit and finish
SCHEDULER_CONF = [
    "algorithm default",
    "schedule_interval 0:0:1",
    "maxujobs 0",
    "queue_sort_method load",
    "job_load_adjustments NONE",
    "load_adjustment_decay_time 0:0:0",
    "load_formula slots",
    "schedd_job_info true",
    "flush_submit_sec 1",
    "flush_finish_sec 1",
    "params none",
    "reprioritize_interval 0:0:0",
    "halftime 168",
    "usage_weight_list cpu=1.000000,mem=0.000000,io=0.000000",
    "compensation_factor 5.000000",
    "weight_user 0.250000",
    "weight_project 0.250000",
    "weight_department 0.250000",
    "weight_job 0.250000",
    "weight_tickets_functional 0",
    "weight_tickets_share 0",
    "share_override_tickets TRUE",
    "share_functional_shares TRUE",
    "max_functional_jobs_to_schedule 200",
    "report_pjob_tickets TRUE",
    "max_pending_tasks_per_job 50",
    "halflife_decay_list none",
    "policy_hierarchy OFS",
    "weight_ticket 0.010000",
    "weight_waiting_time 0.000000",
    "weight_deadline 3600000.000000",
    "weight_urgency 0.100000",
    "weight_priority 1.000000",
    "max_reservation 0",
    "default_duration INFINITY",
]

PE_MPI = [
    "pe_name mpi",
    "slots 9999",
    "user_lists NONE",
    "xuser_lists NONE",
    "start_proc_args NONE",
    "stop_proc_args NONE",
    "allocation_rule $fill_up",
    "control_slaves TRUE",
    "job_is_first_task FALSE",
    "urgency_slots min",
    "accounting_summary FALSE",
    "qsort_args NONE",
]

EXEC_HOST = [
    "load_scaling NONE",
    "complex_values NONE",
    "user_lists NONE",
    "xuser_lists NONE",
    "projects NONE",
    "xprojects NONE",
    "usage_scaling NONE",
    "report_variables NONE",
]

QUEUE = [
    "qname all.q",
    "hostlist @allhosts",
    "seq_no 0",
    "load_thresholds NONE",
    "suspend_thresholds NONE",
    "nsuspend 1",
    "suspend_interval 00:05:00",
    "priority 0",
    "min_cpu_interval 00:05:00",
    "processors UNDEFINED",
    "qtype BATCH INTERACTIVE",
    "ckpt_list NONE",
    "pe_list mpi",
    "rerun FALSE",
    "shell /bin/sh",
    "prolog NONE",
    "epilog NONE",
    "shell_start_mode unix_behavior",
    "starter_method NONE",
    "suspend_method NONE",
    "resume_method NONE",
    "terminate_method NONE",
    "notify 00:00:60",
    "owner_list NONE",
    "user_lists NONE",
    "xuser_lists NONE",
    "subordinate_list NONE",
    "complex_values NONE",
    "projects NONE",
    "xprojects NONE",
    "calendar NONE",
    "initial_state default",
    *(f"{kind}_{limit} INFINITY" for limit in ("rt", "cpu", "fsize", "data", "stack", "core",
                                               "rss", "vmem") for kind in ("s", "h")),
]


# -- pytest fixtures (import them into a test module: ``from sites.sge import sge_site``) -----


@dataclass
class SgeSite:
    """An SGE cluster and its login node: an sshd whose sessions carry the cluster's SGE_ROOT,
    SGE_CELL, SGE_QMASTER_PORT, SGE_EXECD_PORT and PATH (non-interactive SSH sessions read no
    profile), as a real site's do."""

    cluster: SgeCluster
    ssh: SshServer

    @property
    def name(self) -> str:
        return self.cluster.name

    @property
    def host(self) -> Host:
        """root on the login node."""
        return Host(self.name, address="127.0.0.1", port=self.ssh.port, user=self.ssh.user,
                    identity_file=str(self.ssh.client_key))

    @property
    def user_host(self) -> Host:
        """The unprivileged user on the login node (home /home/orchtest): jobs run as them."""
        return Host(self.name, address="127.0.0.1", port=self.ssh.port,
                    user=self.ssh.unprivileged_user, identity_file=str(self.ssh.client_key))

    @property
    def policy(self) -> HostKeyPolicy:
        return HostKeyPolicy(known_hosts_files=[str(self.ssh.known_hosts)])


def require_sge() -> None:
    """Fail (not skip) when SGE is not installed, saying how to install it; skip without root."""
    missing = missing_binaries()
    if missing:
        pytest.fail(f"Son of Grid Engine not installed (missing {', '.join(missing)}): "
                    f"as root, {INSTALL}", pytrace=False)
    if os.geteuid() != 0:
        pytest.skip("SGE tests need root: sge_execd runs jobs as other users "
                    "(run tests/run.sh as root, e.g. in a container)")


@pytest.fixture(scope="session")
def sge_cluster() -> Iterator[SgeCluster]:
    """A single-node SGE cluster 'sge1' on this machine for the session: queue all.q with 2
    slots, parallel environment 'mpi'; stopped and removed at the end."""
    require_sge()
    # not under pytest's 0700 tmp dirs: every user that submits reads SGE_ROOT
    root = Path(tempfile.mkdtemp(prefix="orch-sge-sge1-"))
    cluster = SgeCluster(root, "sge1")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def sge_site(sge_cluster: SgeCluster) -> Iterator[SgeSite]:
    """The login node of ``sge_cluster``: ssh as root or orchtest, then qsub/qstat/qacct."""
    if not os.path.exists(SSHD):
        pytest.fail("OpenSSH server not installed: apt-get install openssh-server "
                    "(tests/run.sh does it)", pytrace=False)
    root = Path(tempfile.mkdtemp(prefix=f"orch-sshd-{sge_cluster.name}-"))
    server = SshServer(root, free_port(), set_env=sge_cluster.env)
    try:
        server.start()
        yield SgeSite(sge_cluster, server)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
