"""Yorc's get_secret, backed by orch's own store: ``orch secrets set/list/remove`` through the
real CLI, the store's files (modes, hostile names, a kill while writing), and a deploy whose
script echoes a secret (masked, stored nowhere), or that needs one not stored (nothing runs)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sites.cli import ORCH, Orch

SECRET = "S3cr-9d1e77ab-only-here"
"""Long and unique: if these bytes are anywhere, the secret leaked."""
USER = "dls-user-5b0c2f"
DLS = "/secret/data/services_secrets/dls"


def put(orch: Orch, *args: str, value: str | bytes, check: int | None = 0,
        **env: str) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """``orch secrets set ARGS`` with ``value`` on standard input."""
    data = value if isinstance(value, bytes) else value.encode()
    proc = subprocess.run(
        [*ORCH, "secrets", "set", *args], cwd=orch.root, input=data, capture_output=True,
        timeout=60, env=orch.env(**env),
    )  # fmt: skip
    result = subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode()
    )
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\n{result.stderr}"
    return result


def store_dir(orch: Orch) -> Path:
    return orch.data / "secrets"


def files_holding(root: Path, needle: bytes) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes())


# ---------------------------------------------------------------------------- the CLI


def test_set_list_remove_round_trip_through_the_cli(orch: Orch):
    first = put(orch, DLS, "password", value=SECRET + "\n")  # one trailing newline dropped
    assert "stored secret 'password' at 'secret/services_secrets/dls'" in first.stderr
    put(orch, "secret/services_secrets/dls", "username", value=USER)
    # the three spellings of a KV v2 path are one entry
    again = put(orch, "/secret/services_secrets/dls/", "password", value=SECRET)
    assert "replaced secret 'password'" in again.stderr
    text = orch("secrets", "list")
    assert text.stdout.split() == ["PATH", "FIELD", "secret/services_secrets/dls", "password",
                                   "secret/services_secrets/dls", "username"]  # fmt: skip
    listed = orch("secrets", "list", "--format", "json")
    assert json.loads(listed.stdout) == [
        {"path": "secret/services_secrets/dls", "field": "password"},
        {"path": "secret/services_secrets/dls", "field": "username"},
    ]
    for proc in (first, again, text, listed):  # never a value
        assert SECRET not in proc.stdout + proc.stderr and USER not in proc.stdout + proc.stderr
    from orch.sites.secrets import SecretStore

    store = SecretStore(store_dir(orch))
    assert store.get("secret/data/services_secrets/dls", "password") == SECRET  # no newline
    # remove one field, then every field of a path; an unknown one is exit 3
    orch("secrets", "remove", "/secret/services_secrets/dls", "username")
    assert [e.field for e in store.list()] == ["password"]
    missing = orch("secrets", "remove", DLS, "username", check=3)
    assert "no secret 'username' at 'secret/services_secrets/dls'" in missing.stderr
    orch("secrets", "remove", "secret/data/services_secrets/dls")
    assert json.loads(orch("secrets", "list", "-f", "json").stdout) == []
    assert list(store_dir(orch).iterdir()) == []


def test_the_value_never_comes_from_the_command_line(orch: Orch, tmp_path: Path):
    # a value on argv is a usage error: ps and shell history would show it
    refused = orch("secrets", "set", DLS, "password", SECRET, check=2)
    assert not store_dir(orch).exists() or list(store_dir(orch).iterdir()) == []
    assert SECRET not in refused.stderr
    # --file: a regular file, capped, one trailing newline dropped
    source = tmp_path / "pw.txt"
    source.write_text(SECRET + "\n\n")  # only one newline goes
    orch("secrets", "set", DLS, "password", "--file", str(source))
    from orch.sites.secrets import SecretStore

    assert SecretStore(store_dir(orch)).get(DLS, "password") == SECRET + "\n"
    device = orch("secrets", "set", DLS, "password", "--file", "/dev/zero", check=3, timeout=20)
    assert "cannot read /dev/zero" in device.stderr
    big = tmp_path / "big"
    big.write_bytes(b"x" * (1024 * 1024 + 1))
    assert "cannot read" in orch("secrets", "set", DLS, "p", "--file", str(big), check=3).stderr
    # nothing read (an empty standard input) stores nothing
    empty = put(orch, DLS, "other", value=b"", check=3)
    assert "empty" in empty.stderr
    assert put(orch, DLS, "bad", value=b"\xff\xfe", check=3).stderr.count("UTF-8") == 1


def test_the_store_is_0700_and_each_secret_0600_whatever_the_umask(orch: Orch):
    orch.data.mkdir(parents=True)
    store_dir(orch).mkdir(mode=0o755)  # made loose by someone: closed again
    store_dir(orch).chmod(0o755)
    proc = subprocess.run(
        [*ORCH, "secrets", "set", DLS, "password"], cwd=orch.root, input=SECRET.encode(),
        capture_output=True, env=orch.env(), preexec_fn=lambda: os.umask(0), timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(store_dir(orch).stat().st_mode) == 0o700
    files = list(store_dir(orch).iterdir())
    assert len(files) == 1 and stat.S_IMODE(files[0].stat().st_mode) == 0o600
    # a secret file opened to others is refused, never read
    files[0].chmod(0o644)
    from orch.sites.secrets import SecretError, SecretStore

    with pytest.raises(SecretError, match="open to other users"):
        SecretStore(store_dir(orch)).get(DLS, "password")


def test_hostile_names_are_refused_or_hashed_never_a_file_name(orch: Orch, tmp_path: Path):
    for path, field, said in [
        ("secret/\x1b[2Jx", "f", "control or formatting character U+001B"),
        ("secret/a", "f\u202eevil", "U+202E"),
        ("secret/" + "a" * 2000, "f", "at most 1024"),
        ("secret/../../etc", "f", "'..' segment"),
        ("///", "f", "names nothing"),
    ]:
        proc = put(orch, path, field, value=SECRET, check=3)
        assert said in proc.stderr
        assert "\x1b" not in proc.stderr and "\u202e" not in proc.stderr  # shown escaped
    from orch.sites.secrets import SecretError, SecretStore

    store = SecretStore(store_dir(orch))
    with pytest.raises(SecretError, match="U\\+0000"):
        store.set("secret/a\0b", "f", SECRET)
    with pytest.raises(SecretError, match="NUL"):
        store.set("secret/a", "f", "a\0b")
    # odd but valid names are stored under their hash: nothing is made outside the folder
    odd = [("secret/$(touch pwned)/`id`/ü ñ", "../../../../pwned"),
           ("x/..x", "/etc/passwd"), ("-rf", "--file")]  # fmt: skip
    for path, field in odd:
        put(orch, "--", path, field, value=SECRET)
    names = sorted(p.name for p in store_dir(orch).iterdir())
    assert len(names) == 3 and all(len(n) == 64 + len(".secret") for n in names)
    assert not list(orch.root.rglob("pwned")) and not (tmp_path.parent / "pwned").exists()
    assert [(e.path, e.field) for e in store.list()] == sorted(odd)


def test_a_kill_while_writing_leaves_the_old_value(orch: Orch):
    from orch.sites.secrets import STALE_TEMP_SECONDS, SecretStore

    store = SecretStore(store_dir(orch))
    store.set(DLS, "password", "the-old-value-123")
    # a writer killed (SIGKILL) after writing half of the new value, before its rename
    killer = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from orch.sites import secrets
        real_write = os.write
        def half_then_die(fd, data):
            real_write(fd, bytes(data)[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        secrets.os.write = half_then_die
        secrets.SecretStore(Path({str(store.root)!r})).set({DLS!r}, "password", {SECRET!r})
    """)  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", killer], capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr
    leftovers = [p for p in store.root.iterdir() if p.name.startswith(".tmp-")]
    assert len(leftovers) == 1 and stat.S_IMODE(leftovers[0].stat().st_mode) == 0o600
    assert store.get(DLS, "password") == "the-old-value-123"
    assert [(e.path, e.field) for e in store.list()] == [("secret/services_secrets/dls",
                                                          "password")]  # fmt: skip
    # the next write removes what a dead writer left (once it is surely not a live one's)
    old = leftovers[0].stat().st_mtime - STALE_TEMP_SECONDS - 5
    os.utime(leftovers[0], (old, old))
    put(orch, DLS, "password", value=SECRET)
    assert [p.name.startswith(".tmp-") for p in store.root.iterdir()] == [False]
    assert store.get(DLS, "password") == SECRET


def test_lookup_reads_yorc_options_and_names_what_is_missing(tmp_path: Path):
    from orch.sites.secrets import SecretError, SecretStore, lookup

    store = SecretStore(tmp_path / "secrets")
    store.set("secret/app", "value", "the-default-field")
    store.set("/secret/data/app", "user", "a-user-value")
    assert lookup("secret/data/app", [], store) == "the-default-field"
    assert lookup("/secret/app", ["ttl=5m", "data=user"], store) == "a-user-value"
    with pytest.raises(SecretError) as missing:
        lookup("/secret/data/app", ["data=password"], store)
    message = str(missing.value)
    assert "no secret 'password' at 'secret/app'" in message
    assert "orch secrets set secret/app password" in message
    assert "a-user-value" not in message and "the-default-field" not in message
    with pytest.raises(SecretError, match="data=FIELD"):
        lookup("secret/app", ["data="], store)


# ---------------------------------------------------------------------------- deploying

BLUEPRINT = """
tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  inputs:
    dls_path: {type: string, default: /secret/data/services_secrets/dls}
  node_templates:
    stage_out:
      type: tosca.nodes.Root
      interfaces:
        Standard:
          create:
            implementation: use.sh
            inputs:
              PASSWORD: { get_secret: [/secret/data/services_secrets/dls, data=password] }
              USERNAME: { get_secret: [{get_input: dls_path}, data=username] }
              MARK: { get_input: dls_path }
  outputs:
    password:
      value: { get_secret: [/secret/services_secrets/dls, data=password] }
    login:
      value:
        concat: ["dls://", { get_secret: [secret/data/services_secrets/dls, data=username] }]
"""
USE = """
#!/bin/sh
echo "connecting as $USERNAME with $PASSWORD"
echo "error: bad password $PASSWORD" >&2
touch "{root}/ran"
"""


def write_blueprint(orch: Orch) -> Path:
    orch.write("b/use.sh", USE.format(root=orch.root)).chmod(0o755)
    return orch.write("b/blueprint.yaml", BLUEPRINT)


def test_a_deploy_reads_the_secret_masks_it_and_stores_it_nowhere(orch: Orch):
    blueprint = write_blueprint(orch)
    put(orch, DLS, "password", value=SECRET)
    put(orch, "secret/services_secrets/dls", "username", value=USER)
    proc = orch("deploy", str(blueprint), "-n", "dls")
    json_run = orch("deploy", str(blueprint), "-n", "dls", "-f", "json")
    logs = orch("logs", "dls")
    shown = [
        proc.stdout, proc.stderr, json_run.stdout, json_run.stderr, logs.stdout,
        orch("logs", "dls", "-f", "json").stdout, orch("outputs", "dls").stdout,
        orch("status", "dls", "-f", "json").stdout, orch("list", "-f", "json").stdout,
    ]  # fmt: skip
    for text in shown:
        assert SECRET not in text and USER not in text
    assert (orch.root / "ran").exists()
    assert "connecting as ***** with *****" in logs.stdout  # masked as secret inputs are
    assert "bad password *****" in logs.stdout
    assert json.loads(orch("outputs", "dls").stdout) == {
        "password": "<secret: hidden>",
        "login": "<secret: hidden>",
    }
    # no file under the state folder (database, WAL, logs, blobs) holds either value...
    state = orch.root / ".orch"
    assert state.is_dir()
    assert files_holding(state, SECRET.encode()) == []
    assert files_holding(state, USER.encode()) == []
    # ... and in all of orch's files, only the secret store does
    assert {p.parent for p in files_holding(orch.root, SECRET.encode())} == {store_dir(orch)}


def test_a_missing_secret_stops_deploy_before_anything_runs(orch: Orch):
    blueprint = write_blueprint(orch)
    put(orch, DLS, "password", value=SECRET)  # the username is not stored
    proc = orch("deploy", str(blueprint), "-n", "dls", check=3)
    message = proc.stderr
    assert "node 'stage_out', input USERNAME of Standard.create" in message
    assert "get_secret '/secret/data/services_secrets/dls' field 'username'" in message
    assert "output login" in message
    assert "orch secrets set secret/services_secrets/dls username" in message
    assert "'password'" not in message and SECRET not in message  # the stored one is fine
    assert not (orch.root / "ran").exists()  # no operation ran
    assert not (orch.root / ".orch").exists()  # nor was the state touched
    # stored now, the same command deploys
    put(orch, "secret/services_secrets/dls", "username", value=USER)
    orch("deploy", str(blueprint), "-n", "dls")
    assert (orch.root / "ran").exists()


def test_a_value_too_short_to_mask_is_warned_about_by_path_and_field(orch: Orch):
    blueprint = write_blueprint(orch)
    put(orch, DLS, "password", value=SECRET)
    put(orch, DLS, "username", value="bo")  # 2 characters: masking them would garble all
    proc = orch("deploy", str(blueprint), "-n", "dls")
    assert ("node 'stage_out', input USERNAME of Standard.create: get_secret "
            "'/secret/data/services_secrets/dls' field 'username' is too short to be masked"
            ) in proc.stderr  # fmt: skip
    assert "'password'" not in proc.stderr and SECRET not in proc.stderr


def test_run_checks_its_secrets_before_anything_runs(orch: Orch):
    orch.write("w/use.sh", USE.format(root=orch.root)).chmod(0o755)
    blueprint = orch.write("w/blueprint.yaml", """
        tosca_definitions_version: tosca_simple_yaml_1_3
        topology_template:
          node_templates:
            svc:
              type: tosca.nodes.Root
              interfaces:
                Standard:
                  configure:
                    implementation: use.sh
                    inputs:
                      PASSWORD: { get_secret: [/secret/data/services_secrets/dls, data=password] }
          workflows:
            again:
              steps:
                configure:
                  target: svc
                  activities: [{call_operation: Standard.configure}]
        """)  # fmt: skip
    put(orch, DLS, "password", value=SECRET)
    orch("deploy", str(blueprint), "-n", "w")
    (orch.root / "ran").unlink()
    orch("secrets", "remove", DLS)
    proc = orch("run", "again", "-n", "w", check=3)
    assert "run again needs 1 secret(s)" in proc.stderr
    assert "node 'svc', input PASSWORD of Standard.configure" in proc.stderr
    assert "orch secrets set secret/services_secrets/dls password" in proc.stderr
    assert not (orch.root / "ran").exists()


def test_validate_refuses_what_the_store_would_refuse(bp):
    checked = bp.check("""
        topology_template:
          node_templates:
            n:
              type: tosca.nodes.Root
              interfaces:
                Standard:
                  create:
                    implementation: x.sh
                    inputs:
                      FINE: { get_secret: [/secret/data/a/b, data=user, ttl=5m] }
                      DOTS: { get_secret: ["secret/../x", data=user] }
                      EMPTY: { get_secret: [secret/x, data=] }
        """)  # fmt: skip
    messages = [d.message for d in checked.all("function.args")]
    assert len(messages) == 2, checked.describe()
    assert any("'..' segment" in m for m in messages)
    assert any("data=FIELD" in m for m in messages)
