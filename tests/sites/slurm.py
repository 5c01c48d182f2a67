"""A real single-node Slurm cluster on 127.0.0.1 for the Slurm executor tests.

It runs the system's munged, slurmctld and slurmd (Debian's Slurm 22.05) in the foreground as
processes this object owns, each in its own process group, with every file under ``root``: its
own munge key and socket, slurm.conf, state, spool and logs. Ports are free ones picked at start,
so two clusters run side by side, which a workflow spanning two sites needs.

The machine has no usable cgroups, so processes are tracked through /proc
(``proctrack/linuxproc``, ``task/none``); the daemons bind to 127.0.0.1 only
(``NoCtldInAddrAny,NoInAddrAny``) and ``slurmctld -c`` starts with no state, so job ids start
at 1. Finished jobs stay visible to ``scontrol show job`` for ``min_job_age`` seconds. By default
there is no slurmdbd, so ``sacct`` does not work; ``accounting=True`` also starts a MariaDB of the
cluster's own (datadir, socket and a free port on 127.0.0.1, all under ``root``) and a slurmdbd
that stores into it, registers the cluster with ``sacctmgr``, and ``sacct`` answers for jobs
slurmctld has forgotten.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from sites.sshd import free_port

SLURMCTLD = "/usr/sbin/slurmctld"
SLURMD = "/usr/sbin/slurmd"
MUNGED = "/usr/sbin/munged"
SLURMDBD = "/usr/sbin/slurmdbd"
MARIADBD = "/usr/sbin/mariadbd"
MARIADB_INSTALL_DB = "mariadb-install-db"
MARIADB = "mariadb"
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo")
PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"


def missing_binaries(accounting: bool = False) -> list[str]:
    """The Slurm and munge programs this machine lacks (empty when a cluster can start); with
    ``accounting``, also slurmdbd, MariaDB and the accounting clients."""
    daemons = (SLURMCTLD, SLURMD, MUNGED) + ((SLURMDBD, MARIADBD) if accounting else ())
    missing = [path for path in daemons if not os.access(path, os.X_OK)]
    path = os.environ.get("PATH", PATH) + ":" + PATH
    clients = CLIENTS + (("sacct", "sacctmgr", MARIADB, MARIADB_INSTALL_DB) if accounting else ())
    return missing + [name for name in clients if shutil.which(name, path=path) is None]


def _memory_mb() -> int:
    """Half of the machine's memory: slurmd refuses a node that claims more than it has."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024 // 2
    return 1024


class SlurmError(RuntimeError):
    """The cluster did not come up (the message carries the daemons' log tails)."""


class SlurmCluster:
    """slurmctld + one slurmd + munged; config, state and logs under ``root``.

    ``root`` must be readable by every user that submits (client commands read slurm.conf and
    talk to the munge socket under it), so it is made 0755.
    """

    def __init__(
        self,
        root: Path,
        name: str = "orchtest",
        *,
        partitions: Sequence[str] = ("debug", "long"),
        cpus: int | None = None,
        min_job_age: int = 3600,
        accounting: bool = False,
        nodes: int = 1,
        gather: bool = False,
    ):
        self.root = Path(root)
        self.name = name
        self.nodes = [f"{name}-n{i}" for i in range(1, nodes + 1)]
        """With more than one (heterogeneous jobs need one node per component here), each
        slurmd has its own port, spool folder and log, and the backfill scheduler, which
        alone starts heterogeneous jobs, looks every second."""
        self.node = self.nodes[0]
        self.gather = gather
        """Whether slurmd samples each step's CPU and memory every second (what sstat
        reports)."""
        self.partitions = tuple(partitions)
        self.cpus = cpus or os.cpu_count() or 1
        self.min_job_age = min_job_age
        self.accounting = accounting
        self.db_dir = self.root / "db"
        self.db_socket = self.db_dir / "mariadbd.sock"
        self.db_port = 0
        self.dbd_port = 0
        self.conf = self.root / "slurm.conf"
        self.munge_dir = self.root / "munge"
        self.munge_socket = self.munge_dir / "munge.socket"
        self.ctld_port = 0
        self.slurmd_port = 0
        self.node_ports: list[int] = []
        self.env = {"SLURM_CONF": str(self.conf), "PATH": PATH}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self.startup_seconds: float | None = None

    # -- set-up -----------------------------------------------------------------------------

    def _write_conf(self) -> None:
        self.ctld_port = free_port()
        self.slurmd_port = free_port()
        while self.slurmd_port == self.ctld_port:
            self.slurmd_port = free_port()
        self.node_ports = [self.slurmd_port]
        while len(self.node_ports) < len(self.nodes):
            port = free_port()
            if port not in (self.ctld_port, *self.node_ports):
                self.node_ports.append(port)
        if self.accounting:
            taken = {self.ctld_port, self.slurmd_port}
            self.dbd_port = self.db_port = 0  # fresh ones on every start
            while self.dbd_port in taken | {0}:
                self.dbd_port = free_port()
            taken.add(self.dbd_port)
            while self.db_port in taken | {0}:
                self.db_port = free_port()
        root = self.root
        many = len(self.nodes) > 1
        node_tag = "%n" if many else ""
        lines = [
            f"ClusterName={self.name}",
            # slurmctld accepts 'localhost' as its own name whatever the machine's host name is
            "SlurmctldHost=localhost(127.0.0.1)",
            f"SlurmctldPort={self.ctld_port}",
            f"SlurmdPort={self.slurmd_port}",
            "CommunicationParameters=NoCtldInAddrAny,NoInAddrAny",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={root / 'ctld'}",
            f"SlurmdSpoolDir={root / 'spool'}{node_tag}",
            f"SlurmctldPidFile={root / 'slurmctld.pid'}",
            f"SlurmdPidFile={root / 'slurmd'}{node_tag}.pid",
            f"SlurmctldLogFile={root / 'slurmctld.log'}",
            f"SlurmdLogFile={root / 'slurmd'}{node_tag}.log",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "SchedulerType=sched/backfill",
            # try to start a batch job when it is submitted, not up to 3 s later (the default)
            "SchedulerParameters=batch_sched_delay=0" + (",bf_interval=1" if many else ""),
            "MpiDefault=none",
            "MailProg=/bin/true",
            *self._accounting_lines(),
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={root / 'jobcomp.txt'}",
            f"MinJobAge={self.min_job_age}",
            "ReturnToService=2",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=30",
            "InactiveLimit=0",
            "KillWait=2",
            "Waittime=0",
        ]
        for node, port in zip(self.nodes, self.node_ports, strict=True):
            lines.append(
                f"NodeName={node} NodeAddr=127.0.0.1 NodeHostname=localhost "
                + (f"Port={port} " if many else "")
                + f"CPUs={self.cpus} RealMemory={_memory_mb()} State=UNKNOWN"
            )
        for index, partition in enumerate(self.partitions):
            default = "YES" if index == 0 else "NO"
            max_time = "30:00" if index == 0 else "INFINITE"
            lines.append(
                f"PartitionName={partition} Nodes={','.join(self.nodes)} Default={default} "
                f"MaxTime={max_time} State=UP"
            )
        self.conf.write_text("\n".join(lines) + "\n")
        self.conf.chmod(0o644)

    def _accounting_lines(self) -> list[str]:
        gather = (["JobAcctGatherType=jobacct_gather/linux", "JobAcctGatherFrequency=task=1"]
                  if self.gather else ["JobAcctGatherType=jobacct_gather/none"])  # fmt: skip
        if not self.accounting:
            return ["AccountingStorageType=accounting_storage/none", *gather]
        return [
            "AccountingStorageType=accounting_storage/slurmdbd",
            "AccountingStorageHost=127.0.0.1",
            f"AccountingStoragePort={self.dbd_port}",
            # the connection to slurmdbd uses the munge socket named here, not AuthInfo's
            f"AccountingStoragePass={self.munge_socket}",
            *gather,
        ]

    def _mariadb(self, sql: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [MARIADB, "--no-defaults", "-S", str(self.db_socket), "-uroot", "-e", sql],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip

    def _start_accounting(self) -> None:
        """MariaDB of the cluster's own, then slurmdbd storing into it (slurmdbd reads
        slurmdbd.conf, which must be mode 600, from the folder of $SLURM_CONF)."""
        self.db_dir.mkdir(exist_ok=True)
        data = self.db_dir / "data"
        if not (data / "mysql").exists():
            install = subprocess.run(
                [MARIADB_INSTALL_DB, "--no-defaults", f"--datadir={data}", "--user=root",
                 "--auth-root-authentication-method=normal", "--skip-test-db",
                 "--skip-name-resolve"],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            if install.returncode != 0:
                raise SlurmError(
                    f"mariadb-install-db exited {install.returncode}\n"
                    f"{install.stdout[-2000:]}{install.stderr[-2000:]}"
                )
        self._spawn(
            "mariadbd",
            [MARIADBD, "--no-defaults", f"--datadir={data}", f"--socket={self.db_socket}",
             f"--port={self.db_port}", "--bind-address=127.0.0.1", "--user=root",
             f"--pid-file={self.db_dir / 'mariadbd.pid'}",
             f"--log-error={self.db_dir / 'mariadbd.err'}", "--skip-log-bin",
             "--skip-name-resolve", "--innodb-buffer-pool-size=32M",
             "--innodb-log-file-size=8M", "--innodb-lock-wait-timeout=900"],
        )  # fmt: skip
        self._wait(lambda: self._mariadb("select 1").returncode == 0, 30.0, "mariadbd")
        grant = self._mariadb(
            "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurmpw';"
            "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
        )
        if grant.returncode != 0:
            raise SlurmError(f"creating the slurm database user: {grant.stderr}")
        dbd_conf = self.root / "slurmdbd.conf"
        dbd_conf.write_text("\n".join([
            "AuthType=auth/munge",
            f"AuthInfo=socket={self.munge_socket}",
            "DbdHost=localhost",
            "DbdAddr=127.0.0.1",
            f"DbdPort={self.dbd_port}",
            "CommunicationParameters=NoInAddrAny",
            "SlurmUser=root",
            f"PidFile={self.root / 'slurmdbd.pid'}",
            f"LogFile={self.root / 'slurmdbd.log'}",
            "DebugLevel=info",
            "StorageType=accounting_storage/mysql",
            "StorageHost=127.0.0.1",
            f"StoragePort={self.db_port}",
            "StorageUser=slurm",
            "StoragePass=slurmpw",
            "StorageLoc=slurm_acct_db",
        ]) + "\n")  # fmt: skip
        dbd_conf.chmod(0o600)  # slurmdbd refuses a conf with a password others can read
        self._spawn("slurmdbd", [SLURMDBD, "-D"])
        self._wait(lambda: self._accepts(self.dbd_port), 30.0, "slurmdbd port")
        # register the cluster before slurmctld first talks to slurmdbd
        self._wait(self._register_cluster, 30.0, "sacctmgr add cluster")

    @staticmethod
    def _accepts(port: int) -> bool:
        with contextlib.closing(socket.socket()) as sock:
            sock.settimeout(0.5)
            return sock.connect_ex(("127.0.0.1", port)) == 0

    def _register_cluster(self) -> bool:
        self.run("sacctmgr", "-i", "add", "cluster", self.name, check=False, timeout=10)
        listed = self.run("sacctmgr", "-n", "-P", "list", "cluster", "format=cluster",
                          check=False, timeout=10)  # fmt: skip
        return self.name in listed.stdout.split()

    def _spawn(self, name: str, argv: list[str], cwd: Path | None = None) -> None:
        """Start one daemon in the foreground, in a new session so its group can be killed."""
        with open(self.root / f"{name}.out", "wb") as out:
            self._procs[name] = subprocess.Popen(
                argv,
                cwd=cwd or self.root,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,
            )

    def _start_munge(self) -> None:
        self.munge_dir.mkdir(mode=0o755, exist_ok=True)
        self.munge_dir.chmod(0o755)
        key = self.munge_dir / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        d = self.munge_dir
        self._spawn(
            "munged",
            [
                MUNGED,
                "--foreground",
                # --force: the socket sits below /tmp, which munged finds too open otherwise
                "--force",
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--pid-file={d / 'munged.pid'}",
                f"--seed-file={d / 'munged.seed'}",
                "--num-threads=2",
            ],
        )
        self._wait(lambda: self.munge_socket.exists(), 10.0, "munged socket")

    def start(self, timeout: float = 30.0) -> None:
        """Start munged, slurmctld and slurmd; return once the node is idle."""
        began = time.monotonic()
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        for sub in ("ctld", "spool", *(f"spool{n}" for n in self.nodes)):
            (self.root / sub).mkdir(exist_ok=True)
        try:
            self._start_munge()
            self._write_conf()
            if self.accounting:
                self._start_accounting()
            # -c: no state from an earlier run, so job ids restart at 1
            self._spawn("slurmctld", [SLURMCTLD, "-D", "-c", "-f", str(self.conf)])
            for node in self.nodes:
                spool = self.root / (f"spool{node}" if len(self.nodes) > 1 else "spool")
                self._spawn("slurmd" if node == self.node else f"slurmd-{node}",
                            [SLURMD, "-D", "-N", node, "-f", str(self.conf)], spool)  # fmt: skip
            self._wait(lambda: self.node_state() == "idle", timeout, "nodes idle")
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.02
        while not ready():
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise SlurmError(
                        f"{name} exited with {proc.returncode} while waiting for "
                        f"{what}\n{self.logs()}"
                    )
            if time.monotonic() > deadline:
                raise SlurmError(f"{what}: not after {timeout} s\n{self.logs()}")
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def logs(self, lines: int = 20) -> str:
        """The last lines of each daemon's log, for error messages."""
        parts = []
        for path in (
            self.root / "slurmctld.log",
            *sorted(self.root.glob("slurmd*.log")),
            self.root / "slurmdbd.log",
            self.db_dir / "mariadbd.err",
            *sorted(self.root.glob("*.out")),
        ):
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path}\n" + "\n".join(tail))
        return "\n".join(parts)

    # -- use --------------------------------------------------------------------------------

    def run(
        self, *cmd: str, check: bool = True, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a client command (sbatch, squeue, ...) on this machine against this cluster."""
        return subprocess.run(
            cmd,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    def node_state(self) -> str:
        """The node's state as sinfo prints it ('idle', 'alloc', 'down*', ...); '' if unknown."""
        result = self.run("sinfo", "-h", "-n", ",".join(self.nodes), "-o", "%t", check=False,
                          timeout=10)  # fmt: skip
        states = set(result.stdout.split()) if result.returncode == 0 else set()
        return states.pop() if len(states) == 1 else ""

    def job_ids(self) -> list[str]:
        """Ids of the jobs slurmctld knows that have not ended."""
        result = self.run("squeue", "-h", "-o", "%A", check=False, timeout=10)
        return result.stdout.split() if result.returncode == 0 else []

    # -- tear-down --------------------------------------------------------------------------

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel the jobs and let them end, then end slurmd, slurmctld and munged.

        Job steps run under slurmstepd, which leaves slurmd's process tree and session and
        ignores SIGTERM: jobs are cancelled through slurmctld first, and any step still there
        after the daemons are gone is killed with its whole session.
        """
        if not self._procs:
            return
        ctld = self._procs.get("slurmctld")
        if ctld is not None and ctld.poll() is None:
            ids = self.job_ids()
            if ids:
                self.run("scancel", *ids, check=False, timeout=10)
                with contextlib.suppress(SlurmError):
                    self._wait(lambda: not self.job_ids(), timeout, "cancelled jobs to end")
        # the Slurm daemons first, then what they talk to (MariaDB, munged)
        last = ("mariadbd", "munged")
        self._terminate([p for n, p in self._procs.items() if n not in last], timeout)
        self._terminate([p for n, p in self._procs.items() if n in last], timeout)
        self._procs.clear()
        self._kill_steps()

    @staticmethod
    def _terminate(procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def _kill_steps(self) -> None:
        """SIGKILL every session led by one of this cluster's slurmstepd processes."""
        spools = {str(self.root / "spool"), *(str(self.root / f"spool{n}") for n in self.nodes)}
        sessions = set()
        by_session: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                fields = stat.rsplit(")", 1)[1].split()
                by_session.setdefault(int(fields[3]), []).append(int(entry))
                # slurmd runs in the spool folder: its steps inherit it as their cwd
                if (
                    stat.split(" (", 1)[1].startswith("slurmstepd)")
                    and fields[0] != "Z"
                    and os.readlink(f"/proc/{entry}/cwd") in spools
                ):
                    sessions.add(int(fields[3]))
            except (OSError, IndexError, ValueError):
                continue
        for session in sessions:
            for pid in by_session.get(session, []):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> SlurmCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
