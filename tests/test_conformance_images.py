"""The executor contract (tests/conformance.py) for container images
(``orch.nodes.ContainerImage``) built on orch's machine with the real rootful podman of
``tests/sites/podman.py``, from busybox-static (no registry is reached)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

from conformance import LAST_LINE, ExecutorConformance, Failing, Harness
from sites.cli import wait_until
from sites.podman import Podman, static_busybox
from sites.processes import running

INSTALL_BUSYBOX = "/bin/busybox mkdir -p /usr/bin /sbin /usr/sbin && /bin/busybox --install -s"
SLOW = "sleep 97"
"""The slow build step (cancel, timeout): found among the processes by its command line."""
SHORT = "sleep 4"
"""The re-attach test's build step: the killed orch's build must end on its own."""


def step(text: str) -> str:
    return "          - " + text.replace("\\", "\\\\").replace('"', '\\"').join('""') + "\n"


class TestContainerImage(ExecutorConformance):
    failing = Failing("broken", "Standard.create", rc=3)
    expected_outputs = {"built": True, "transferred": False}
    timeout_args = ("--timeout", "3")
    tail_window = 3  # podman's "Error: building at STEP ..." follows the step's output
    reattach_kind = "short"

    @pytest.fixture
    def site(self, podman_env: Podman) -> Podman:
        return podman_env

    def setup(self, h: Harness) -> None:
        busybox = static_busybox()
        shutil.copy2(busybox, h.root / "busybox")
        shutil.copy2(busybox, h.root / "sh")
        h.env["ORCH_CACHE_HOME"] = str(h.root / "cache")

    def blueprint(self, h: Harness, kind: str) -> str:
        name = {"ok": "image", "fail": "broken", "secret": "image"}.get(kind, "slow")
        steps = {
            "ok": ["echo built > /built.txt"],
            "fail": [f'echo "first line"; echo "{LAST_LINE}" >&2; exit 3'],
            "slow": [f"echo slow build; {SLOW}"],
            "timeout": [f"echo slow build; {SLOW}"],
            "short": [f"echo short build; {SHORT}"],
            "secret": ['echo "the token is $GREETING"'],
        }[kind]
        greeting = "{get_input: secret}" if kind == "secret" else "hello"
        outputs = ""
        if kind == "ok":
            outputs = "".join(
                f"    {o}: {{value: {{get_attribute: [image, {o}]}}}}\n"
                for o in ("image_path", "image_hash", "built", "transferred")
            )
            outputs = "  outputs:\n" + outputs
        return (
            "tosca_definitions_version: tosca_simple_yaml_1_3\n"
            "imports: [orch-hpc:1.0.0]\n"
            "topology_template:\n"
            "  inputs:\n"
            "    secret: {type: string, default: none-given, metadata: {sensitive: true}}\n"
            "  node_templates:\n"
            f"    {name}:\n"
            "      type: orch.nodes.ContainerImage\n"
            "      properties:\n"
            "        base: scratch\n"
            "        builder: podman\n"
            "        files: {busybox: /bin/busybox, sh: /bin/sh}\n"
            f"        environment: {{GREETING: {greeting}}}\n"
            '        runscript: echo "$GREETING"\n'
            "        post:\n" + step(INSTALL_BUSYBOX) + "".join(step(s) for s in steps) + outputs
        )

    def sleepers(self, marker: str) -> list[str]:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").strip()
            except OSError:
                continue
            if args.endswith(marker.encode()) and running(int(entry.name)):
                found.append(f"pid {entry.name}: {args.decode(errors='replace')}")
        return found

    def started(self, h: Harness) -> bool:
        return bool(self.sleepers(SLOW) or self.sleepers(SHORT))

    def leftovers(self, h: Harness) -> list[str]:
        return self.sleepers(SLOW) + self.sleepers(SHORT)

    def test_reattach_after_kill_9_finishes_without_running_twice(self, h: Harness) -> None:
        try:
            super().test_reattach_after_kill_9_finishes_without_running_twice(h)
        finally:  # the killed orch's build step (this test's) is ended: not into the next test
            for found in self.sleepers(SHORT):
                with contextlib.suppress(OSError):
                    os.kill(int(found.split()[1].rstrip(":")), signal.SIGKILL)
            wait_until(lambda: not self.sleepers(SHORT), "the orphaned build", timeout=30)

    def check_ok(self, h: Harness) -> None:
        outputs = h.outputs()
        path = Path(outputs["image_path"])
        assert path.parent == h.root / "cache" / "images", path
        assert path.name == f"image-{outputs['image_hash'][:12]}.tar" and path.stat().st_size
        assert h.attributes("image")["image_path"] == str(path)
        assert "building image image-" in h.logs()

    def before_kill(self, h: Harness) -> None:
        h.data["orphans"] = self.sleepers(SHORT)

    def while_resumed(self, h: Harness, resumed: Any) -> None:
        """Watches the build steps while the same command runs again: the killed orch's build
        and the new one must never run at once."""
        import time

        while resumed.poll() is None:
            now = self.sleepers(SHORT)
            assert len(now) < 2, f"two builds at once: {now}"
            time.sleep(0.05)

    def check_reattached(self, h: Harness, err: str) -> None:
        # the killed orch's build (podman's own processes) was waited for, never built beside
        # a second one; the image is in the cache once
        assert h.data["orphans"], "the killed orch's build step was not running"
        assert "waiting for slow/0 Standard.create" in err, err
        images = list((h.root / "cache" / "images").glob("slow-*.tar"))
        assert len(images) == 1, images
        assert h.attributes("slow")["image_path"] == str(images[0])

    def secret_reached(self, h: Harness) -> None:
        assert "the token is *****" in h.logs()
