"""Sites (``sites.yaml``), credentials named by a token, and ``orch sites check``.

The check runs the real CLI in a subprocess against the loopback Slurm site (a real sshd and a
real slurmctld/slurmd, from ``tests/sites``): a credential is generated with ``orch credentials
generate``, its public key installed in the test sshd's authorized keys, and sites.yaml names
the token only.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import paramiko
import pytest

from orch.sites.check import (
    Probe,
    SiteReport,
    check_site,
    judge,
    parse_partitions,
    parse_sections,
)
from orch.sites.config import Site, SitesError, candidates, load_sites
from orch.sites.credentials import (
    TOKEN_PATTERN,
    CredentialError,
    CredentialStore,
    data_home,
    new_token,
)
from orch.transport.base import CommandResult
from sites.cli import TOKEN, Orch, site_yaml
from sites.fixtures import SlurmSite
from sites.sshd import free_port


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(SitesError) as caught:
        load_sites(path)
    return [str(d) for d in caught.value.diagnostics]


# -- sites.yaml ----------------------------------------------------------------------------------


def test_a_site_with_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path / "sites.yaml",
        f"""
        sites:
          hpc1:
            host: login.hpc1.example.org
            user: jdoe
            credentials: {TOKEN}
            partition: debug
            account: proj42
            qos: normal
            modules: [gcc/12.2.0, openmpi/4.1.5]
            container_runtime: apptainer
            environment: {{OMP_NUM_THREADS: 8, DEBUG: true, NAME: x}}
            known_hosts: keys/known_hosts
          small:
            host: 10.0.0.5
            identity_file: ~/.ssh/id_small
            scheduler: none
            container_runtime: none
            port: 2222
    """,
    )
    book = load_sites(path)
    assert book.path == path
    assert list(book.sites) == ["hpc1", "small"]
    hpc1 = book.get("hpc1")
    assert (hpc1.address, hpc1.port, hpc1.user, hpc1.credentials) == (
        "login.hpc1.example.org",
        22,
        "jdoe",
        TOKEN,
    )
    assert (hpc1.scheduler, hpc1.partition, hpc1.account, hpc1.qos) == (
        "slurm",
        "debug",
        "proj42",
        "normal",
    )
    assert hpc1.modules == ("gcc/12.2.0", "openmpi/4.1.5")
    assert hpc1.work_dir == "~/orch-work"
    assert hpc1.container_runtime == "apptainer"
    assert hpc1.environment == {"OMP_NUM_THREADS": "8", "DEBUG": "true", "NAME": "x"}
    assert hpc1.known_hosts == str(tmp_path / "keys" / "known_hosts")  # relative to the file
    small = book.get("small")
    assert (small.port, small.scheduler, small.container_runtime) == (2222, "none", None)
    assert small.identity_file == os.path.expanduser("~/.ssh/id_small")
    assert small.login() == "10.0.0.5:2222"


def test_every_error_is_reported_at_its_line_and_column(tmp_path: Path) -> None:
    path = write(
        tmp_path / "sites.yaml",
        f"""
        sites:
          hpc1:
            hots: login.example.org
            port: "22"
            scheduler: lsf
            container_runtime: docker
            work_dir: $(rm -rf ~)
            environment: {{1BAD: x}}
          hpc2:
            host: b
            credentials: {TOKEN}
            identity_file: ~/.ssh/id
            port: 70000
          bad name: {{host: c}}
    """,
    )
    found = errors_of(path)
    text = "\n".join(found)
    where = str(path)
    assert f"{where}:2:3: error: site 'hpc1' is missing required key 'host'" in text
    assert f"{where}:3:5: error: unknown key 'hots' in site 'hpc1'" in text
    # the hint names every valid key, and the closest first
    assert (
        "hint: did you mean 'host'? valid: account, container_runtime, credentials, "
        "environment, environments, host, identity_file, image_base, known_hosts, modules, "
        "parallel_environment, partition, port, qos, registry, scheduler, user, work_dir" in text
    )
    assert f"{where}:4:11: error: 'port' of site 'hpc1' must be a whole number" in text
    assert f"{where}:5:16: error: 'scheduler' of site 'hpc1': 'lsf' is not one of" in text
    assert f"{where}:6:24: error: 'container_runtime' of site 'hpc1': 'docker'" in text
    assert f"{where}:7:15: error: 'work_dir' of site 'hpc1'" in text
    assert "no quotes, backslashes or command substitution" in text
    assert f"{where}:8:19: error: '1BAD' is not an environment variable name" in text
    assert f"{where}:9:3: error: site 'hpc2' gives both 'credentials' and 'identity_file'" in text
    assert f"{where}:13:11: error: 'port' of site 'hpc2': 70000 is out of range" in text
    assert f"{where}:14:3: error: site name 'bad name' is not usable" in text
    assert len(found) == 10, text


def test_yaml_and_shape_errors(tmp_path: Path) -> None:
    broken = write(tmp_path / "broken.yaml", "sites:\n  hpc1: {host: a\n")
    assert errors_of(broken)[0].startswith(f"{broken}:")
    listed = write(tmp_path / "list.yaml", "- host: a\n")
    assert errors_of(listed) == [
        f"{listed}:1:3: error: sites.yaml must be a mapping, not a list [sites.value]\n"
        "  hint: sites.yaml starts with 'sites:', then one mapping per site"
    ]
    top = write(tmp_path / "top.yaml", "sites: {}\nsite: {}\n")
    assert errors_of(top)[0].startswith(f"{top}:2:1: error: unknown key 'site' in sites.yaml")
    twice = write(tmp_path / "twice.yaml", "sites:\n  a: {host: a}\n  a: {host: b}\n")
    assert errors_of(twice) == [
        f"{twice}:3:3: error: duplicate key 'a' (first defined at line 2) [yaml.duplicate-key]\n"
        "  hint: remove or rename one of them"
    ]
    empty = write(tmp_path / "empty.yaml", "sites: {}\n")
    assert len(load_sites(empty)) == 0


def test_unknown_site_lists_the_known_ones(tmp_path: Path) -> None:
    path = write(tmp_path / "sites.yaml", "sites:\n  hpc1: {host: a}\n  jureca: {host: b}\n")
    with pytest.raises(SitesError) as caught:
        load_sites(path).get("hpc")
    text = str(caught.value)
    assert "no site 'hpc'" in text and "(sites: hpc1, jureca)" in text
    assert "did you mean 'hpc1'?" in text


def test_lookup_order(tmp_path: Path) -> None:
    work, home, xdg = tmp_path / "work", tmp_path / "home", tmp_path / "xdg"
    work.mkdir()
    env = {"HOME": str(home)}
    in_home = write(home / ".config" / "orch" / "sites.yaml", "sites: {home: {host: a}}\n")
    assert load_sites(cwd=work, env=env).path == in_home
    in_xdg = write(xdg / "orch" / "sites.yaml", "sites: {xdg: {host: a}}\n")
    assert load_sites(cwd=work, env={**env, "XDG_CONFIG_HOME": str(xdg)}).path == in_xdg
    here = write(work / "sites.yaml", "sites: {here: {host: a}}\n")
    assert list(load_sites(cwd=work, env=env).sites) == ["here"]
    named = write(tmp_path / "other.yaml", "sites: {named: {host: a}}\n")
    by_env = load_sites(cwd=work, env={**env, "ORCH_SITES": "../other.yaml"})
    assert by_env.path.resolve() == named
    by_flag = load_sites(here, cwd=work, env={**env, "ORCH_SITES": str(named)})
    assert list(by_flag.sites) == ["here"]  # --sites wins over ORCH_SITES
    with pytest.raises(SitesError, match=r"ORCH_SITES names .*missing.yaml, which is not a file"):
        load_sites(cwd=work, env={**env, "ORCH_SITES": "missing.yaml"})
    here.unlink()
    in_xdg.unlink()
    in_home.unlink()
    with pytest.raises(SitesError) as caught:
        load_sites(cwd=work, env=env)
    assert f"no sites.yaml (looked at {work / 'sites.yaml'}, {in_home})" in str(caught.value)
    assert candidates(work, env) == [work / "sites.yaml", in_home]


def test_host_resolves_the_token_to_the_stored_key(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path / "credentials")
    credential = store.generate("for hpc1")
    site = Site("hpc1", "login.example.org", 2222, "jdoe", credentials=credential.token)
    host = site.host(store)
    assert (host.name, host.address, host.port, host.user) == (
        "hpc1",
        "login.example.org",
        2222,
        "jdoe",
    )
    assert host.identity_file == str(store.root / credential.token / "key")
    assert host.private_key is None and host.password is None  # read at connection time
    with pytest.raises(CredentialError, match=f"no credential {TOKEN}"):
        Site("x", "a", credentials=TOKEN).host(store)
    plain = Site("y", "a", identity_file="/keys/id").host(store)
    assert plain.identity_file == "/keys/id"


# -- credentials -------------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_data_home() -> None:
    assert data_home({"ORCH_DATA_HOME": "/d", "XDG_DATA_HOME": "/x"}) == Path("/d")
    assert data_home({"XDG_DATA_HOME": "/x", "HOME": "/h"}) == Path("/x/orch")
    assert data_home({"XDG_DATA_HOME": "rel", "HOME": "/h"}) == Path("/h/.local/share/orch")


def test_tokens_are_random_and_never_look_like_options() -> None:
    tokens = {new_token() for _ in range(500)}
    assert len(tokens) == 500
    assert all(len(t) == 24 and t[0].isalnum() and TOKEN_PATTERN.match(t) for t in tokens)


def test_generate_list_public_key_remove(orch: Orch) -> None:
    generated = orch("credentials", "generate", "--comment", "orch on laptop")
    token = generated.stdout.strip()
    assert len(token) >= 22 and token.replace("-", "").replace("_", "").isalnum()
    folder = orch.data / "credentials" / token
    key = folder / "key"
    assert mode(orch.data / "credentials") == 0o700
    assert mode(folder) == 0o700
    assert mode(key) == 0o600
    public = (folder / "key.pub").read_text().strip()
    assert public.startswith("ssh-ed25519 ") and public.endswith(" orch on laptop")
    assert generated.stderr.splitlines() == [
        "Add this public key to ~/.ssh/authorized_keys on each site that uses the token:",
        public,
    ]
    # the stored key is one that paramiko (the transport) and OpenSSH both load
    loaded = paramiko.Ed25519Key.from_private_key_file(str(key))
    assert f"{loaded.get_name()} {loaded.get_base64()}" == " ".join(public.split()[:2])
    keygen = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(key)], capture_output=True, text=True, check=True
    )
    assert keygen.stdout.split()[:2] == public.split()[:2]

    listed = orch("credentials", "list", "-f", "json")
    [entry] = json.loads(listed.stdout)
    assert entry["token"] == token and entry["key_type"] == "ssh-ed25519"
    assert entry["comment"] == "orch on laptop" and entry["public_key"] == public
    fingerprint = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(key)], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    assert entry["fingerprint"] == fingerprint
    table = orch("credentials", "list").stdout
    assert table.splitlines()[0].split() == ["TOKEN", "TYPE", "FINGERPRINT", "COMMENT", "CREATED"]
    assert token in table and fingerprint in table
    assert orch("credentials", "public-key", token).stdout.strip() == public

    removed = orch("credentials", "remove", token)
    assert f"removed {token}" in removed.stderr and public in removed.stderr
    assert not folder.exists()
    gone = orch("credentials", "public-key", token, check=3)
    assert f"no credential {token}" in gone.stderr
    assert "is not a credential token" in orch("credentials", "remove", "../..", check=3).stderr
    assert_no_key_material(key_texts=[], outputs=[generated, listed, removed])


def test_add_imports_existing_keys(orch: Orch, tmp_path: Path) -> None:
    rsa = tmp_path / "id_rsa"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-C", "me@desk", "-f", str(rsa)],
        check=True,
    )
    rsa.chmod(0o644)  # others could read it: imported, with a warning
    added = orch("credentials", "add", str(rsa))
    token = added.stdout.strip()
    assert "is readable by other users" in added.stderr
    stored = orch.data / "credentials" / token / "key"
    assert mode(stored) == 0o600
    [entry] = json.loads(orch("credentials", "list", "-f", "json").stdout)
    assert (entry["key_type"], entry["comment"]) == ("ssh-rsa", "me@desk")  # from id_rsa.pub
    assert paramiko.RSAKey.from_private_key_file(str(stored)).get_bits() == 2048
    again = orch("credentials", "add", str(rsa))  # the same key keeps its token
    assert again.stdout.strip() == token and "already stored" in again.stderr

    ecdsa = tmp_path / "id_ecdsa"
    subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", str(ecdsa)], check=True)
    ecdsa.chmod(0o600)
    quiet = orch("credentials", "add", str(ecdsa), "--comment", "ci")
    assert "readable by other users" not in quiet.stderr
    assert len(json.loads(orch("credentials", "list", "-f", "json").stdout)) == 2

    locked = tmp_path / "id_locked"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", str(locked)], check=True
    )
    assert "protected by a passphrase" in orch("credentials", "add", str(locked), check=3).stderr
    assert "is a public key" in orch("credentials", "add", f"{rsa}.pub", check=3).stderr
    junk = orch.write("junk", "hello\n")
    assert "not a private key" in orch("credentials", "add", str(junk), check=3).stderr
    assert "cannot read" in orch("credentials", "add", str(tmp_path / "nope"), check=3).stderr
    assert_no_key_material([rsa.read_text(), ecdsa.read_text()], [added, again, quiet])


def test_a_key_open_to_others_is_refused_at_use(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path / "credentials")
    credential = store.generate()
    key = store.root / credential.token / "key"
    key.chmod(0o644)
    with pytest.raises(CredentialError, match=r"open to other users .* chmod 600"):
        store.key_path(credential.token)


def key_bodies(texts: list[str]) -> list[str]:
    """Lines of the base64 body of private keys that are not part of the public key (an
    OpenSSH private key file embeds its public key): any of them in an output is a leak."""
    from cryptography.hazmat.primitives import serialization

    found = []
    for text in texts:
        key = serialization.load_ssh_private_key(text.encode(), password=None)
        public = (
            key.public_key()
            .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
            .decode()
        )
        lines = [line for line in text.splitlines() if line and not line.startswith("-----")]
        found += [line for line in lines if line not in public]
    return found


def assert_no_key_material(key_texts: list[str], outputs: list[Any]) -> None:
    for out in outputs:
        for text in (out.stdout, out.stderr):
            assert "PRIVATE KEY" not in text
            for line in key_bodies(key_texts):
                assert line not in text


# -- the check's parse, on canned output --------------------------------------------------------


def probes(**sections: tuple[str, int]) -> dict[str, Probe]:
    base = {
        "hostname": ("login1", 0),
        "user": ("jdoe", 0),
        "system": ("Linux", 0),
        "path": ("/usr/bin:/bin", 0),
        "modules": ("no module command", 127),
        "work_dir": (
            "path=/home/jdoe/orch-work\nexisting=/home/jdoe\nwritable=yes\n"
            "/dev/sda1 100 50 5000000 1% /home",
            0,
        ),
    }
    return {name: Probe(out, rc) for name, (out, rc) in {**base, **sections}.items()}


def findings(report: SiteReport) -> dict[str, tuple[str, str]]:
    return {f.check: (f.level, f.message) for f in report.findings}


def test_partitions_with_mixed_node_states() -> None:
    parsed = parse_partitions(
        "batch*|up|10|idle|1-00:00:00\nbatch*|up|2|down*|1-00:00:00\nbatch*|up|3|mixed|"
        "1-00:00:00\ngpu|up|4|drained|2:00:00\nnoise line\n"
    )
    batch, gpu = parsed["batch"], parsed["gpu"]
    assert batch.default and batch.nodes == 15 and batch.usable_nodes == 13
    assert batch.states == {"idle": 10, "down*": 2, "mixed": 3}
    assert not gpu.default and gpu.usable_nodes == 0


def test_judging_accounts_qos_partitions_and_containers() -> None:
    site = Site(
        "hpc",
        "login",
        user="jdoe",
        partition="gpu",
        account="proj2",
        qos="high",
        container_runtime="apptainer",
        modules=("gcc/12",),
    )
    report = SiteReport(site)
    judge(
        report,
        probes(
            sinfo=("/usr/bin/sinfo", 0),
            slurm_version=("slurm 23.11.4", 0),
            partitions=("batch*|up|2|idle|1:00:00\ngpu|up|4|drained|2:00:00", 0),
            associations=("proj1|normal,low\nproj3|normal", 0),
            singularity=("singularity-ce version 3.11.4", 0),
        ),
    )
    found = findings(report)
    assert report.status == "missing" and report.exit_code == 4
    assert found["slurm"] == ("ok", "Slurm 23.11.4")
    assert (
        found["partition"][0] == "warning" and "no usable node: 4 drained" in found["partition"][1]
    )
    assert found["account"] == ("missing", "account 'proj2' is not associated with the user")
    assert found["qos"] == ("missing", "qos 'high' is not associated with the user")
    assert found["modules"][0] == "missing"
    assert found["apptainer"][0] == "missing"
    hint = next(f.hint for f in report.findings if f.check == "apptainer")
    assert hint and "singularity 3.11.4" in hint
    assert report.facts["accounts"] == ["proj1", "proj3"]
    assert report.facts["slurm"]["default_partition"] == "batch"
    assert found["work_dir"][0] == "ok" and "(will be created)" in found["work_dir"][1]


def test_judging_a_site_without_slurm() -> None:
    needs = SiteReport(Site("hpc", "login"))
    judge(needs, probes())
    assert findings(needs)["slurm"][0] == "missing" and needs.exit_code == 4
    free = SiteReport(Site("box", "login", scheduler="none"))
    judge(free, probes())
    assert free.status == "ok" and free.facts["slurm"] is None


def test_sections_ignore_chatter_and_foreign_marks() -> None:
    out = "Welcome to HPC!\n@m begin a\nline\n@x end a 0\n\n@m end a 2\nbye\n@m begin b\n"
    assert parse_sections(out, "@m") == {"a": Probe("line\n@x end a 0", 2)}


class StalledTransport:
    """A site whose probes stop answering at partitions: what the transport returns when the
    whole check times out."""

    host = "jdoe@login:22"

    def run(
        self, command: str, *, env: dict[str, str], timeout: float, stdin: bytes, **_: object
    ) -> CommandResult:
        mark = env["ORCH_CHECK_MARK"]
        assert command == "/bin/sh -s" and b"sinfo -h -o" in stdin
        assert env["ORCH_CHECK_PROBE_TIMEOUT"] == "2.5"  # a quarter of the check's time
        out = f"{mark} begin hostname\nlogin7\n\n{mark} end hostname 0\n{mark} begin partitions\n"
        return CommandResult(None, out, "", timed_out=True)


def test_a_check_that_times_out_says_where() -> None:
    report = check_site(Site("hpc", "login"), StalledTransport(), timeout=10)  # type: ignore[arg-type]
    assert report.status == "missing" and report.facts["hostname"] == "login7"
    [finding] = report.findings
    assert finding.check == "partitions" and "stopped after 10 s" in finding.message


# -- orch sites list -----------------------------------------------------------------------------


def test_sites_list(orch: Orch) -> None:
    orch.write(
        "sites.yaml",
        f"""
        sites:
          hpc1: {{host: login1, user: jdoe, credentials: {TOKEN}, partition: debug}}
          box: {{host: box.lan, port: 2200, scheduler: none, container_runtime: podman}}
    """,
    )
    text = orch("sites", "list")
    assert text.stderr.strip() == f"sites from {orch.root / 'sites.yaml'}"
    lines = text.stdout.splitlines()
    assert lines[0].split() == [
        "NAME",
        "LOGIN",
        "SCHEDULER",
        "PARTITION",
        "ACCOUNT",
        "CONTAINERS",
        "AUTH",
    ]
    assert lines[1].split() == [
        "hpc1",
        "jdoe@login1:22",
        "slurm",
        "debug",
        "-",
        "-",
        "token",
        TOKEN,
    ]
    assert lines[2].split()[:6] == ["box", "box.lan:2200", "none", "-", "-", "podman"]
    data = json.loads(orch("sites", "list", "-f", "json").stdout)
    assert data["file"] == str(orch.root / "sites.yaml")
    assert [s["name"] for s in data["sites"]] == ["hpc1", "box"]
    assert data["sites"][0]["work_dir"] == "~/orch-work"
    orch.write("bad.yaml", "sites:\n  x: {host: a, prot: 1}\n")
    bad = orch("sites", "list", "--sites", "bad.yaml", check=3)
    assert "bad.yaml:2:16: error: unknown key 'prot' in site 'x'" in bad.stderr
    assert "did you mean 'port'?" in bad.stderr
    unknown = orch("sites", "check", "nope", check=3)
    assert "no site 'nope'" in unknown.stderr and "(sites: box, hpc1)" in unknown.stderr


def test_the_example_in_the_help_is_valid(orch: Orch) -> None:
    shown = orch("sites", "--help").stdout
    lines = shown[shown.index("    sites:") :].splitlines()
    example = orch.write("example.yaml", "\n".join(line[4:] for line in lines) + "\n")
    hpc1 = load_sites(example).get("hpc1")
    assert (hpc1.work_dir, hpc1.container_runtime) == ("$SCRATCH/orch-work", "apptainer")


# -- orch sites check on the loopback Slurm site ----------------------------------------------


def stored_key(orch: Orch, token: str) -> str:
    return (orch.data / "credentials" / token / "key").read_text()


def local_slurm_version(site: SlurmSite) -> str:
    return site.cluster.run("sinfo", "--version").stdout.split()[-1]


def test_check_reports_slurm_partitions_and_space(
    orch: Orch, slurm_site: SlurmSite, credential: str
) -> None:
    orch.write("sites.yaml", "sites:\n" + site_yaml(slurm_site, credential, partition="debug"))
    proc = orch("sites", "check", "hpc1", "-f", "json")
    data = json.loads(proc.stdout)
    assert data["status"] == "ok"
    [report] = data["sites"]
    assert (report["site"], report["status"], report["error"]) == ("hpc1", "ok", None)
    assert report["hostname"] == socket.gethostname()
    assert report["user"] == report["remote_user"] == "orchtest"
    slurm = report["slurm"]
    assert slurm["version"] == local_slurm_version(slurm_site)
    partitions = {p["name"]: p for p in slurm["partitions"]}
    assert set(partitions) == {"debug", "long"}
    assert partitions["debug"]["default"] and not partitions["long"]["default"]
    assert partitions["debug"]["available"] == "up" and partitions["debug"]["nodes"] == 1
    assert partitions["long"]["time_limit"] == "infinite"
    levels = {f["check"]: f["level"] for f in report["findings"]}
    assert levels["partition"] == "ok" and levels["work_dir"] == "ok"
    work = report["work_dir"]
    assert work["path"] == "/home/orchtest/orch-work" and work["writable"]
    assert work["free_kib"] > 0
    containers = report["containers"]
    assert set(containers) == {"apptainer", "singularity", "podman"}
    for tool, version in containers.items():  # the site is this machine: same tools
        assert (version is None) == (shutil.which(tool) is None), (tool, version)

    text = orch("sites", "check", "hpc1")
    out = text.stdout
    assert out.startswith(f"hpc1: orchtest@127.0.0.1:{slurm_site.ssh.port}, login node ")
    assert f"Slurm {local_slurm_version(slurm_site)}" in out
    assert "debug* (up, 1 node: 1 idle; limit 30:00)" in out
    assert "long (up, 1 node: 1 idle; limit infinite)" in out
    assert "partition 'debug' exists (1 of 1 nodes usable)" in out
    assert out.rstrip().endswith("hpc1: ok")
    assert_no_key_material([stored_key(orch, credential)], [proc, text])


def test_check_reports_what_is_missing(orch: Orch, slurm_site: SlurmSite, credential: str) -> None:
    orch.write(
        "sites.yaml",
        "sites:\n"
        + site_yaml(
            slurm_site,
            credential,
            partition="gpu",
            account="proj42",
            modules=["gcc/12.2.0"],
            container_runtime="apptainer",
        ),
    )
    proc = orch("sites", "check", "-f", "json", check=4)
    [report] = json.loads(proc.stdout)["sites"]
    assert report["status"] == "missing"
    found = {f["check"]: f for f in report["findings"]}
    assert found["partition"]["level"] == "missing"
    assert found["partition"]["message"] == "partition 'gpu' does not exist for this user"
    assert found["partition"]["hint"] == "valid: debug, long"
    assert found["apptainer"]["level"] == "missing"
    assert found["modules"]["level"] == "missing"
    # the test cluster has no slurmdbd: the account cannot be checked, which is not an error
    assert found["account"]["level"] == "info" and "not checked" in found["account"]["message"]
    text = orch("sites", "check", check=4).stdout
    assert "MISSING  partition" in text and "hpc1: 3 missing" in text


def fake_tools(folder: Path) -> Path:
    """A bin folder with a `module` command (Environment Modules' interface) and apptainer."""
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    scripts = {
        "module": """#!/bin/sh
            case $1 in
              --version) echo "Modules Release 5.3.1 (2023-06-27)" >&2 ;;
              is-avail) [ "$2" = gcc/12.2.0 ] || [ "$2" = openmpi ] ;;
              *) exit 1 ;;
            esac
        """,
        "apptainer": """#!/bin/sh
            echo "apptainer version 1.3.4"
        """,
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(textwrap.dedent(body).strip() + "\n")
        path.chmod(0o755)
    return bin_dir


def test_check_uses_the_site_environment(
    orch: Orch, slurm_site: SlurmSite, credential: str, shared_dir: Path
) -> None:
    bin_dir = fake_tools(shared_dir)
    scratch = shared_dir / "scratch"
    scratch.mkdir(mode=0o777)
    scratch.chmod(0o777)
    env = {
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
        "SCRATCH": str(scratch),
        "SLURM_CONF": slurm_site.cluster.env["SLURM_CONF"],
    }
    orch.write(
        "sites.yaml",
        "sites:\n"
        + site_yaml(
            slurm_site,
            credential,
            modules=["gcc/12.2.0", "openmpi"],
            container_runtime="apptainer",
            work_dir="${SCRATCH}/orch-work",
            environment=env,
        )
        + site_yaml(slurm_site, credential, "unset", work_dir="$NO_SUCH_VARIABLE/x"),
    )
    proc = orch("sites", "check", "-f", "json", check=4)
    reports = {r["site"]: r for r in json.loads(proc.stdout)["sites"]}
    good = reports["hpc1"]
    assert good["status"] == "ok", good
    assert good["containers"]["apptainer"] == "1.3.4"
    assert good["modules"] == {"system": "Modules Release 5.3.1 (2023-06-27)", "missing": []}
    assert good["work_dir"]["path"] == f"{scratch}/orch-work"
    assert not good["work_dir"]["exists"]
    levels = {f["check"]: f["level"] for f in good["findings"]}
    assert levels["apptainer"] == levels["modules"] == levels["work_dir"] == "ok"
    bad = reports["unset"]
    work = next(f for f in bad["findings"] if f["check"] == "work_dir")
    assert bad["status"] == "missing" and work["level"] == "missing"
    assert "NO_SUCH_VARIABLE" in work["message"]


def test_a_hung_sinfo_is_stopped_and_reported(
    orch: Orch, slurm_site: SlurmSite, credential: str, shared_dir: Path
) -> None:
    """sinfo waits for an unanswering slurmctld: the probe is stopped, the rest still runs."""
    bin_dir = shared_dir / "bin"
    bin_dir.mkdir()
    sinfo = bin_dir / "sinfo"
    sinfo.write_text(
        '#!/bin/sh\n[ "$1" = --version ] && { echo "slurm 23.02.1"; exit 0; }\nexec sleep 30\n'
    )
    sinfo.chmod(0o755)
    orch.write(
        "sites.yaml",
        "sites:\n"
        + site_yaml(slurm_site, credential, environment={"PATH": f"{bin_dir}:/usr/bin:/bin"}),
    )
    proc = orch("sites", "check", "--timeout", "8", "-f", "json", check=4)
    [report] = json.loads(proc.stdout)["sites"]
    assert report["slurm"]["version"] == "23.02.1"
    slurm = next(f for f in report["findings"] if f["check"] == "slurm")
    assert slurm["level"] == "missing"
    assert slurm["message"] == "sinfo fails: no answer in time (the probe was stopped)"
    assert report["work_dir"]["writable"]  # the probes after it ran
    assert report["seconds"] < 8


def test_check_scheduler_slurm_without_sinfo(
    orch: Orch, slurm_site: SlurmSite, credential: str, shared_dir: Path
) -> None:
    """A PATH with the basic tools but no Slurm: the site cannot do what it is configured for."""
    bin_dir = shared_dir / "bin"
    bin_dir.mkdir()
    for tool in (
        "base64",
        "setsid",
        "hostname",
        "id",
        "uname",
        "sed",
        "awk",
        "dirname",
        "tail",
        "df",
        "timeout",
        "cat",
    ):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    orch.write(
        "sites.yaml",
        "sites:\n"
        + site_yaml(slurm_site, credential, environment={"PATH": str(bin_dir)})
        + site_yaml(
            slurm_site, credential, "plain", scheduler="none", environment={"PATH": str(bin_dir)}
        ),
    )
    proc = orch("sites", "check", "-f", "json", check=4)
    reports = {r["site"]: r for r in json.loads(proc.stdout)["sites"]}
    slurm = next(f for f in reports["hpc1"]["findings"] if f["check"] == "slurm")
    assert slurm["level"] == "missing" and "sinfo not found" in slurm["message"]
    assert str(bin_dir) in slurm["hint"]
    assert reports["plain"]["status"] == "ok"


def test_unreachable_site_names_host_port_and_reason(
    orch: Orch, slurm_site: SlurmSite, credential: str
) -> None:
    port = free_port()
    orch.write(
        "sites.yaml",
        "sites:\n"
        + site_yaml(slurm_site, credential, "down", port=port)
        + site_yaml(slurm_site, credential, "up"),
    )
    proc = orch("sites", "check", "down", check=3)
    assert f"down: UNREACHABLE: orchtest@127.0.0.1:{port}: connection refused" in proc.stdout
    data = json.loads(orch("sites", "check", "-f", "json", check=3).stdout)
    assert data["status"] == "unreachable"
    statuses = {r["site"]: r["status"] for r in data["sites"]}
    assert statuses == {"down": "unreachable", "up": "ok"}
    down = data["sites"][0]
    assert down["port"] == port and "connection refused" in down["error"]


def test_host_keys_are_checked(orch: Orch, slurm_site: SlurmSite, credential: str) -> None:
    line = site_yaml(slurm_site, credential).replace(
        f', "known_hosts": "{slurm_site.ssh.known_hosts}"', ""
    )
    orch.write("sites.yaml", "sites:\n" + line)
    refused = orch("sites", "check", check=3)  # HOME is empty: no known_hosts
    assert "unknown SSH host key" in refused.stdout
    assert f"127.0.0.1:{slurm_site.ssh.port}" in refused.stdout
    known = orch.root / "known_hosts"
    orch("sites", "check", "--accept-new-host-keys", "--known-hosts", str(known))
    assert f"[127.0.0.1]:{slurm_site.ssh.port} ssh-ed25519 " in known.read_text()
    orch("sites", "check", "--known-hosts", str(known))  # now known: no flag needed


def test_a_key_the_site_does_not_know_is_named_by_its_token(
    orch: Orch, slurm_site: SlurmSite
) -> None:
    token = orch("credentials", "generate").stdout.strip()  # not installed on the site
    orch.write("sites.yaml", "sites:\n" + site_yaml(slurm_site, token))
    proc = orch("sites", "check", check=3)
    assert (
        f"hpc1: UNREACHABLE: orchtest@127.0.0.1:{slurm_site.ssh.port}: authentication failed "
        f"for user orchtest with credential {token}; is its public key in "
        f"~/.ssh/authorized_keys of orchtest on the site? (`orch credentials public-key {token}`"
    ) in proc.stdout
    assert str(orch.data) not in proc.stdout


def test_unknown_credential_token_is_unreachable(orch: Orch, slurm_site: SlurmSite) -> None:
    orch.write("sites.yaml", "sites:\n" + site_yaml(slurm_site, TOKEN))
    proc = orch("sites", "check", check=3)
    assert f"no credential {TOKEN}" in proc.stdout


SITE_BLUEPRINT = """
tosca_definitions_version: tosca_simple_yaml_1_3
imports:
  - orch-types:1.0.0
topology_template:
  inputs:
    site: {type: string}
    out: {type: string}
  node_templates:
    login:
      type: orch.nodes.Site
      properties:
        site: {get_input: site}
    probe:
      type: tosca.nodes.SoftwareComponent
      requirements:
        - host: login
      interfaces:
        Standard:
          create:
            implementation: probe.sh
            inputs:
              OUT: {get_input: out}
"""


def test_a_blueprint_names_a_site_and_runs_there_with_its_token(
    orch: Orch, slurm_site: SlurmSite, credential: str, shared_dir: Path
) -> None:
    orch.write("sites.yaml", "sites:\n" + site_yaml(slurm_site, credential))
    orch.write("site.yaml", SITE_BLUEPRINT)
    orch.write("probe.sh", '#!/bin/sh\n{ id -un; sinfo -h -o %P; } > "$OUT/probe.txt"\n')
    known = ["--known-hosts", str(slurm_site.ssh.known_hosts)]
    orch("deploy", "site.yaml", "-i", "site=hpc1", "-i", f"out={shared_dir}", *known)
    user, *partitions = (shared_dir / "probe.txt").read_text().split()
    assert user == slurm_site.ssh.unprivileged_user  # ran over SSH as the site's user
    assert partitions == ["debug*", "long"]
    state = (orch.root / ".orch" / "state.db").read_bytes()
    assert stored_key(orch, credential).encode() not in state

    unknown = orch("deploy", "site.yaml", "-n", "other", "-i", "site=nowhere",
                   "-i", f"out={shared_dir}", *known, check=4)  # fmt: skip
    assert "no site 'nowhere'" in unknown.stderr
    assert "hpc1" in unknown.stderr
