#!/usr/bin/env python3
"""Benchmark `orch validate` against tosca-parser and xOpera's TOSCA parser.

Generates inputs with the shared generators (../shared/bench), installs the peers
on first use into cached venvs, times every tool on every input as a whole process
(wall time, median of --repeat runs; peak RSS of that process) and prints a
Markdown table with the performance goals marked MET / NOT MET. On each input the
tools take turns run by run, so that a busy stretch of the machine weighs on all
of them alike rather than on whichever tool ran then.

    python benchmarks/validate.py [--sizes 10,100,1000,5000] [--repeat 3]
        [--peers-dir DIR] [--no-peers] [--json] [--orch CMD] [--timeout S]

orch's modules are compiled to bytecode first, as pip compiles every peer's at install (with
PYTHONDONTWRITEBYTECODE set, an editable checkout would otherwise compile on every run).
Peak RSS comes from os.wait4() on the tool's own process: the kernel's rusage of
exactly that child (and the descendants it waited for), as GNU time reports it,
without a wrapper process that would add to the wall time.
Progress goes to stderr, the table (or --json) to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PEERS_DIR = Path.home() / ".cache" / "orch-bench" / "venvs"
HELP_REPEAT = 10
INSTALL_TIMEOUT = 1200.0
# exit code 1 means "findings" for every tool, unless orch's output shows a crash
CRASH_MARKERS = ("Traceback (most recent call last)", "No module named")


@dataclass(frozen=True)
class PeerSpec:
    """A peer tool: its venv, the pip steps that install it, and its command line."""

    name: str
    venv: str
    pip_steps: tuple[tuple[str, ...], ...]
    argv: tuple[str, ...]  # argv[0] is a script in the venv's bin/; "{file}" is the input


PEERS: tuple[PeerSpec, ...] = (
    PeerSpec(
        name="tosca-parser",
        venv="tosca-parser-2.15.0",
        pip_steps=(("tosca-parser==2.15.0",),),
        argv=("tosca-parser", "--template-file={file}"),
    ),
    # opera-tosca-parser pins PyYAML<=5.4.1, whose sdist does not build with
    # Cython 3 under build isolation (see shared/README.md for the recipe).
    PeerSpec(
        name="xopera",
        venv="opera-tosca-parser-0.2.2",
        pip_steps=(
            ("cython<3", "wheel", "setuptools<70"),
            ("--no-build-isolation", "pyyaml==5.4.1"),
            ("opera-tosca-parser==0.2.2",),
        ),
        argv=("opera-tosca-parser", "parse", "{file}"),
    ),
)


@dataclass
class Tool:
    """A command to benchmark: argv template ("{file}" is the input) and its environment."""

    name: str
    argv: list[str]
    env: dict[str, str]
    is_orch: bool = False
    error: str = ""  # set when the tool could not be installed

    def command(self, path: Path) -> list[str]:
        """The argv for one input file."""
        return [a.replace("{file}", str(path)) for a in self.argv]


@dataclass
class Run:
    """One process run: wall time, peak RSS, exit code and verdict."""

    seconds: float
    max_rss_kib: int
    returncode: int | None
    verdict: str  # ok | findings | error | timeout
    note: str = ""  # last line of output, for errors


@dataclass
class Result:
    """All runs of one tool on one input, summarised."""

    status: str  # ok | findings | error | timeout | skipped | not installed
    runs: list[Run] = field(default_factory=list)
    median_s: float | None = None
    max_rss_kib: int | None = None
    note: str = ""


@dataclass
class Input:
    """A generated input file."""

    name: str
    family: str  # gen_validate | chain
    n: int
    path: Path
    size_bytes: int = 0
    results: dict[str, Result] = field(default_factory=dict)


def log(msg: str) -> None:
    """Progress message to stderr."""
    print(msg, file=sys.stderr, flush=True)


def int_list(text: str) -> list[int]:
    """Parse '10,100,1000' (empty -> [])."""
    return [int(x) for x in text.split(",") if x.strip()]


def clean_env() -> dict[str, str]:
    """The environment minus variables that would leak into a peer's venv."""
    return {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }


def last_line(data: bytes) -> str:
    """The last non-blank line of a process's output, shortened."""
    lines = [ln.strip() for ln in data.decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""


# --------------------------------------------------------------------------- running


def run_once(argv: list[str], env: dict[str, str], timeout: float, is_orch: bool) -> Run:
    """Run argv once; wall time and peak RSS of exactly that process (os.wait4)."""
    killed = threading.Event()

    def kill(pid: int) -> None:
        killed.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            return Run(0.0, 0, None, "error", f"cannot start {argv[0]}: {exc}")
        timer = threading.Timer(timeout, kill, (proc.pid,))
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        timer.cancel()
        proc.returncode = rc = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if killed.is_set():
        return Run(seconds, usage.ru_maxrss, None, "timeout", f">{timeout:g}s")
    note = last_line(stderr) or last_line(stdout)
    if rc == 0:
        verdict = "ok"
    elif rc == 1 and not (is_orch and any(m.encode() in stderr for m in CRASH_MARKERS)):
        verdict = "findings"
    else:
        verdict = "error"
        note = f"rc={rc}: {note}"
    return Run(seconds, usage.ru_maxrss, rc, verdict, note if verdict != "ok" else "")


def measure(tool: Tool, argv: list[str], repeat: int, timeout: float) -> Result:
    """Run a command `repeat` times; stop early on a timeout or a failure to start."""
    return interleaved([(tool, argv)], repeat, timeout)[0]


def interleaved(
    commands: list[tuple[Tool, list[str]]], repeat: int, timeout: float
) -> list[Result]:
    """Run the commands in turn, `repeat` rounds: the tools compared share the machine's state
    (load from other processes, clock, caches) run by run, instead of each having a stretch of
    time of its own. A command stops early on a timeout or a failure to start."""
    runs: list[list[Run]] = [[] for _ in commands]
    for _ in range(repeat):
        for (tool, argv), done in zip(commands, runs, strict=True):
            if done and (done[-1].verdict == "timeout" or done[-1].returncode is None):
                continue
            done.append(run_once(argv, tool.env, timeout, tool.is_orch))
    return [summarize(r, timeout) for r in runs]


def summarize(runs: list[Run], timeout: float) -> Result:
    """The runs of one command on one input as a Result: status, median, peak RSS."""
    first = runs[0]
    if any(r.verdict == "timeout" for r in runs):
        return Result("timeout", runs, note=f">{timeout:g}s")
    if first.returncode is None:  # could not start
        return Result("error", runs, note=first.note)
    result = Result(
        first.verdict,
        runs,
        median_s=statistics.median(r.seconds for r in runs),
        max_rss_kib=max(r.max_rss_kib for r in runs),
        note=first.note,
    )
    if len({r.verdict for r in runs}) > 1:
        result.note = "verdict differs between runs: " + ",".join(r.verdict for r in runs)
    return result


def skip_reason(prior: list[tuple[int, Result]], n: int, timeout: float) -> str:
    """Why a tool should not run on size n, given its results on the same family."""
    if any(r.status == "timeout" for m, r in prior if m < n):
        return f"timed out on a smaller input (> {timeout:g} s)"
    done = [(m, r.median_s) for m, r in prior if m < n and r.median_s is not None]
    if done:
        m, seconds = max(done)
        est = seconds * n / m  # linear extrapolation from the largest smaller input
        if est > timeout:
            return f"would take > {timeout:g} s (est. {est:.0f} s)"
    return ""


# --------------------------------------------------------------------------- setup


def find_shared(arg: str | None) -> Path:
    """--shared, else $ORCH_SHARED, else ../shared beside the checkout."""
    shared = Path(arg or os.environ.get("ORCH_SHARED") or REPO.parent / "shared")
    for gen in ("gen_validate.py", "gen_deploy.py"):
        if not (shared / "bench" / gen).is_file():
            sys.exit(f"validate.py: {shared / 'bench' / gen} not found (use --shared DIR)")
    return shared


def generate(shared: Path, work: Path, sizes: list[int], chains: list[int]) -> list[Input]:
    """Write the benchmark inputs under `work` with the shared generators."""
    bench = shared / "bench"
    inputs: list[Input] = []
    for n in sizes:
        path = work / f"gv_{n}" / "t.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)  # the generator does not mkdir
        log(f"generating gen_validate N={n}")
        cmd = [sys.executable, str(bench / "gen_validate.py"), str(n), "-o", str(path)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        inputs.append(Input(f"gen_validate {n}", "gen_validate", n, path, path.stat().st_size))
    if chains:
        log(f"generating gen_deploy chains {chains}")
        subprocess.run(
            [
                sys.executable,
                str(bench / "gen_deploy.py"),
                "--out",
                str(work / "gd"),
                "--validate-sizes",
                ",".join(map(str, chains)),
                "--deploy-sizes",
                "0",  # it has no "none": 0 writes an empty tree_0
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        for n in chains:
            path = work / "gd" / "validate" / f"chain_{n}" / "service.yaml"
            inputs.append(Input(f"gen_deploy chain {n}", "chain", n, path, path.stat().st_size))
    return inputs


def unshim(program: str) -> str:
    """The full path of program, or of the real executable behind a pyenv shim
    (whose bash wrapper would add ~50-100 ms to every run)."""
    path = shutil.which(program)
    if not path:
        return program
    if Path(path).parent.name != "shims" or not shutil.which("pyenv"):
        return path
    proc = subprocess.run(["pyenv", "which", Path(path).name], capture_output=True, text=True)
    real = proc.stdout.strip()
    if proc.returncode == 0 and real:
        log(f"{path} is a pyenv shim: timing {real} instead")
        return real
    return path


def orch_tool(arg: str | None) -> Tool:
    """--orch CMD, else `orch` on PATH, else `python -m orch` on the checkout's src/."""
    env = dict(os.environ)
    if arg:
        base = shlex.split(arg)
        base[0] = unshim(base[0])
    elif shutil.which("orch"):
        base = [unshim("orch")]
    else:
        base = [sys.executable, "-m", "orch"]
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH", "")) if p
        )
        log(f"`orch` is not on PATH: using {sys.executable} -m orch with PYTHONPATH={REPO}/src")
    return Tool("orch", [*base, "validate", "{file}"], env, is_orch=True)


def tool_python(program: str) -> str:
    """The interpreter that runs ``program``: itself, or the one its #! line names."""
    if Path(program).name.startswith("python"):
        return program
    try:
        with open(program, "rb") as stream:
            first = stream.readline().decode("utf-8", "replace").strip()
    except OSError:
        return sys.executable
    if not first.startswith("#!"):
        return sys.executable
    words = first[2:].split()
    if words and Path(words[0]).name == "env" and len(words) > 1:
        return shutil.which(words[1]) or sys.executable
    return words[0] if words else sys.executable


def compile_bytecode(tool: Tool) -> None:
    """Give orch's modules their bytecode, as `pip install` does for every peer.

    An editable checkout gets it on first import, unless PYTHONDONTWRITEBYTECODE is set: then
    every timed run would compile orch from source while the peers load theirs.
    """
    code = (
        "import compileall, os, orch; "
        "compileall.compile_dir(os.path.dirname(orch.__file__), quiet=1)"
    )
    python = tool_python(tool.argv[0])
    try:
        proc = subprocess.run(
            [python, "-c", code], env=tool.env, capture_output=True, text=True, timeout=300
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log(f"could not compile orch's bytecode: {exc}")
        return
    if proc.returncode != 0:
        log(f"could not compile orch's bytecode: {last_line(proc.stderr.encode())}")


def install_peer(spec: PeerSpec, peers_dir: Path) -> Tool:
    """Return the peer as a Tool, installing it into its venv on first use."""
    venv = peers_dir / spec.venv
    bindir = venv / "bin"
    marker = venv / ".orch-bench-installed"
    tool = Tool(spec.name, [str(bindir / spec.argv[0]), *spec.argv[1:]], clean_env())
    if marker.is_file() and (bindir / spec.argv[0]).is_file():
        return tool
    if venv.exists():
        shutil.rmtree(venv)
    log(f"installing {spec.name} into {venv} (first use) ...")
    steps = [[sys.executable, "-m", "venv", str(venv)]] + [
        [str(bindir / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", *s]
        for s in spec.pip_steps
    ]
    for cmd in steps:
        shown = shlex.join(cmd[2:])  # "venv DIR" / "pip install ..."
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, env=clean_env()
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            tool.error = f"`{shown}`: {exc}"
            return tool
        if proc.returncode != 0:
            lines = [
                ln
                for ln in (proc.stderr + proc.stdout).splitlines()
                if ln.strip() and "is ignored" not in ln  # this machine's extra-index noise
            ]
            tool.error = f"`{shown}` failed: {' | '.join(lines[-3:])[:400]}"
            log(f"  {spec.name}: {tool.error}")
            return tool
    marker.write_text(" ".join(" ".join(s) for s in spec.pip_steps) + "\n")
    log(f"  {spec.name} installed")
    return tool


# --------------------------------------------------------------------------- report


def seconds_cell(r: Result | None) -> str:
    """A time cell: seconds, or why there is none."""
    if r is None:
        return "—"
    if r.median_s is not None and r.status in ("ok", "findings"):
        return f"{r.median_s:.3f}"
    return r.note if r.status == "timeout" else r.status


def ratio(peer: Result | None, orch: Result | None) -> float | None:
    """Peer time / orch time, when both finished with a verdict."""
    ok = ("ok", "findings")
    if not (peer and orch and peer.status in ok and orch.status in ok):
        return None
    if peer.median_s is None or not orch.median_s:
        return None
    return peer.median_s / orch.median_s


def goals(inputs: list[Input], help_result: Result) -> list[tuple[str, str, str]]:
    """(goal, MET / NOT MET / NOT MEASURED, measured value) for each goal."""
    by_n = {i.n: i.results for i in inputs if i.family == "gen_validate"}
    out: list[tuple[str, str, str]] = []

    def check(goal: str, value: float | None, limit: float, unit: str, le: bool = True) -> None:
        if value is None:
            out.append((goal, "NOT MEASURED", "—"))
        else:
            met = value <= limit if le else value >= limit
            out.append((goal, "MET" if met else "NOT MET", f"{value:.3g} {unit}".strip()))

    def orch_at(n: int) -> Result | None:
        r = by_n.get(n, {}).get("orch")
        return r if r and r.status in ("ok", "findings") else None

    for n, limit in ((1000, 0.3), (5000, 1.0)):
        r = orch_at(n)
        check(f"orch validate N={n} <= {limit} s", r and r.median_s, limit, "s")
    for n in (1000, 5000):
        res = by_n.get(n, {})
        check(
            f">= 10x faster than tosca-parser at N={n}",
            ratio(res.get("tosca-parser"), res.get("orch")),
            10,
            "x",
            le=False,
        )
    r = orch_at(5000)
    rss = r.max_rss_kib / 1024 if r and r.max_rss_kib else None
    check("orch peak RSS at N=5000 <= 150 MiB", rss, 150, "MiB")
    h = help_result.median_s if help_result.status == "ok" else None
    check("`orch --help` <= 150 ms", h * 1000 if h is not None else None, 150, "ms")
    return out


def table(rows: list[list[str]]) -> str:
    """A padded Markdown table; the first row is the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    fmt = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([f"| {fmt[0]} |", sep, *(f"| {line} |" for line in fmt[1:])])


def report(inputs: list[Input], tools: list[Tool], help_result: Result, timeout: float) -> str:
    """The Markdown report: table, goals, and notes on failures."""
    head = [
        "input",
        "orch s",
        "orch MiB",
        "tosca-parser s",
        "xopera s",
        "tosca-parser/orch",
        "xopera/orch",
        "orch",
        "tosca-parser",
        "xopera",
    ]
    rows = [head]
    for inp in inputs:
        res = inp.results
        orch = res.get("orch")
        rss = f"{orch.max_rss_kib / 1024:.0f}" if orch and orch.max_rss_kib else "—"
        if orch and orch.status not in ("ok", "findings"):
            rss = "—"
        ratios = [ratio(res.get(p), orch) for p in ("tosca-parser", "xopera")]
        rows.append(
            [
                inp.name,
                seconds_cell(orch),
                rss,
                seconds_cell(res.get("tosca-parser")),
                seconds_cell(res.get("xopera")),
                *(f"{x:.1f}x" if x is not None else "—" for x in ratios),
                *(res[t].status if t in res else "—" for t in ("orch", "tosca-parser", "xopera")),
            ]
        )
    lines = [table(rows), ""]
    help_cell = (
        f"{help_result.median_s * 1000:.0f} ms (median of {len(help_result.runs)})"
        if help_result.status == "ok" and help_result.median_s is not None
        else f"{help_result.status}: {help_result.note}"
    )
    lines += [f"`orch --help`: {help_cell}", "", "Goals:"]
    lines += [f"- {g}: **{s}** ({v})" for g, s, v in goals(inputs, help_result)]
    notes = [f"- {t.name}: not installed: {t.error}" for t in tools if t.error]
    for inp in inputs:
        for name, r in inp.results.items():
            if r.status != "not installed" and (r.status in ("error", "timeout") or r.note):
                notes.append(f"- {name} on {inp.name}: {r.status}: {r.note}")
    if notes:
        lines += ["", "Notes:", *notes]
    lines += ["", "Commands (FILE = the input):"]
    lines += [f"- {t.name}: `{shlex.join(t.command(Path('FILE')))}`" for t in tools]
    lines.append(
        f"\nWall time = median of runs of the whole process; RSS = peak of the process; "
        f"timeout {timeout:g} s; {os.cpu_count()} CPUs, Python {platform.python_version()}."
    )
    return "\n".join(lines)


def as_json(
    inputs: list[Input], tools: list[Tool], help_result: Result, args: argparse.Namespace
) -> str:
    """The raw measurements as JSON."""
    return json.dumps(
        {
            "repeat": args.repeat,
            "timeout_s": args.timeout,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "tools": {
                t.name: {"command": t.command(Path("{file}")), "install_error": t.error or None}
                for t in tools
            },
            "orch_help": asdict(help_result),
            "inputs": [
                {
                    "name": i.name,
                    "family": i.family,
                    "n": i.n,
                    "bytes": i.size_bytes,
                    "results": {k: asdict(v) for k, v in i.results.items()},
                }
                for i in inputs
            ],
            "goals": [
                {"goal": g, "status": s, "measured": v} for g, s, v in goals(inputs, help_result)
            ],
        },
        indent=2,
    )


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--sizes",
        type=int_list,
        default=int_list("10,100,1000,5000"),
        help="gen_validate node counts (default 10,100,1000,5000)",
    )
    ap.add_argument(
        "--chain-sizes",
        type=int_list,
        default=int_list("1000,5000"),
        help="gen_deploy chain lengths (default 1000,5000; '' for none)",
    )
    ap.add_argument("--repeat", type=int, default=3, help="runs per tool and input (median)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per run (default 300)")
    ap.add_argument("--orch", help="orch command (default: `orch`, else python -m orch)")
    ap.add_argument("--shared", help="shared/ dir (default $ORCH_SHARED or ../shared)")
    ap.add_argument(
        "--peers-dir",
        type=Path,
        default=DEFAULT_PEERS_DIR,
        help=f"venv cache for the peers (default {DEFAULT_PEERS_DIR})",
    )
    ap.add_argument("--no-peers", action="store_true", help="benchmark orch only")
    ap.add_argument("--keep", action="store_true", help="keep the generated inputs")
    ap.add_argument("--json", action="store_true", help="print raw measurements as JSON")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Generate, install, measure, report."""
    args = parse_args(argv)
    shared = find_shared(args.shared)
    tools = [orch_tool(args.orch)]
    if not args.no_peers:
        args.peers_dir.mkdir(parents=True, exist_ok=True)
        tools += [install_peer(spec, args.peers_dir) for spec in PEERS]

    work = Path(tempfile.mkdtemp(prefix="orch-bench-"))
    try:
        inputs = generate(shared, work, args.sizes, args.chain_sizes)

        orch = tools[0]
        compile_bytecode(orch)
        log(f"timing `{shlex.join(orch.argv[:-2])} --help` x{HELP_REPEAT}")
        help_argv = [*orch.argv[:-2], "--help"]
        run_once(help_argv, orch.env, args.timeout, True)  # warm-up (bytecode, page cache)
        help_result = measure(orch, help_argv, HELP_REPEAT, args.timeout)

        done: dict[tuple[str, str], list[tuple[int, Result]]] = {}
        for inp in sorted(inputs, key=lambda i: (i.family, i.n)):
            active = []
            for tool in tools:
                prior = done.setdefault((tool.name, inp.family), [])
                why = tool.error or skip_reason(prior, inp.n, args.timeout)
                if why:
                    status = "not installed" if tool.error else "skipped"
                    inp.results[tool.name] = Result(status, note=why)
                else:
                    active.append(tool)
            names = ", ".join(t.name for t in active)
            log(f"{inp.name}: {names} in turn, x{args.repeat} ...")
            commands = [(t, t.command(inp.path)) for t in active]
            results = interleaved(commands, args.repeat, args.timeout)
            for tool, result in zip(active, results, strict=True):
                inp.results[tool.name] = result
                done[(tool.name, inp.family)].append((inp.n, result))
                shown = f"{result.median_s:.3f} s" if result.median_s is not None else ""
                log(
                    f"  {tool.name}: "
                    + " ".join(x for x in (result.status, shown, result.note) if x)
                )
    finally:
        if args.keep:
            log(f"inputs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    if args.json:
        print(as_json(inputs, tools, help_result, args))
    else:
        print(report(inputs, tools, help_result, args.timeout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
