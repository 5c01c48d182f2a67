"""Container images (``orch.nodes.ContainerImage``, ``orch.nodes.SpackEnvironment``).

The recipe and spack.yaml writers are checked on their text; the builds are real: podman
(``tests/sites/podman.py``) and Apptainer (``tests/sites/apptainer.py``, skipped with the reason
when it is not installed) build images from busybox-static, which the tests then run. The end
to end test deploys an image hosted on a site (the test sshd, as the user orchtest) with the
orch CLI. No test pulls from a registry.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import Blueprints
from orch.executors.base import Artifact, Host, OperationResult, RunContext, Task
from orch.executors.images import ImageExecutor
from orch.images import spack
from orch.images.cache import cache_root, content_hash
from orch.images.context import compose
from orch.images.convert import dockerfile_to_definition
from orch.images.spec import ImageError, image_spec
from orch.transport.local import LocalTransport
from orch.transport.ssh import TransportPool
from sites.podman import Podman, static_busybox
from sites.sshd import SshServer

ORCH = [sys.executable, "-m", "orch"]

SPACK_ENV = {
    "specs": ["gromacs@2023 +mpi", "py-numpy"],
    "target": "x86_64_v3",
    "mpi": "openmpi@4.1",
    "gpu": "cuda",
    "gpu_arch": "80",
    "compiler": "gcc@12",
    "packages": {
        "openmpi": {"externals": [{"spec": "openmpi@4.1.5", "prefix": "/usr"}],
                    "buildable": False},
        "all": {"variants": ["+mpi"]},
    },
    "view": True,
}  # fmt: skip

SPACK_STAND_IN = r"""#!/bin/sh
# A stand-in for Spack (which cannot be installed here): it accepts the commands orch's
# recipes run, as Spack documents them, records each call, and "installs" a hello program
# into the environment's view.
echo "spack $*" >> /spack-calls.log
env_dir=
if [ "$1" = -e ]; then env_dir=$2; shift 2; fi
case "$1" in
  concretize) test -f "$env_dir/spack.yaml" ;;
  install)
    mkdir -p /opt/views/view/bin /opt/software
    printf '#!/bin/sh\necho "hello from the Spack view ($GREETING)"\n' \
      > /opt/views/view/bin/hello
    chmod 755 /opt/views/view/bin/hello ;;
  env)
    # spack env activate --sh -d DIR
    echo 'export PATH=/opt/views/view/bin:$PATH' ;;
  *) echo "stand-in spack: unknown command $*" >&2; exit 2 ;;
esac
"""


@pytest.fixture(autouse=True)
def _image_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test has its own image cache."""
    monkeypatch.setenv("ORCH_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    return tmp_path / "cache"


def busybox_files(folder: Path) -> dict[str, str]:
    """busybox, and a copy as /bin/sh (so that build steps have a shell in an empty image)."""
    busybox = static_busybox()
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, folder / "busybox")
    shutil.copy2(busybox, folder / "sh")
    return {"busybox": "/bin/busybox", "sh": "/bin/sh"}


INSTALL_BUSYBOX = "/bin/busybox mkdir -p /usr/bin /sbin /usr/sbin && /bin/busybox --install -s"


def task_for(
    folder: Path,
    props: dict[str, Any],
    *,
    node: str = "app",
    operation: str = "create",
    related: dict[str, dict[str, Any]] | None = None,
    host: Host | None = None,
    site: Any = None,
) -> Task:
    return Task(
        deployment="images", node=node, instance=f"{node}/0", interface="Standard",
        operation=operation, implementation=Artifact("image", folder / "image"),
        host=host or Host("localhost"), properties=props, related=related or {},
        base_dir=str(folder), site=site, timeout=300,
    )  # fmt: skip


class Run:
    """One operation of the image executor, with its log lines."""

    def __init__(self, task: Task, *, force: bool = False, transport: Any = None):
        self.lines: list[str] = []
        context = RunContext(
            transport=transport or (lambda host: LocalTransport()),
            cancel=threading.Event(),
            log=lambda stream, line: self.lines.append(line),
            force_rebuild=force,
        )
        started = time.monotonic()
        self.result: OperationResult = ImageExecutor().run(task, context)
        self.seconds = time.monotonic() - started

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def output(self, name: str) -> str:
        assert self.result.ok, f"{self.result.message}\n{self.log}"
        return self.result.outputs[name]


# -- spack.yaml ------------------------------------------------------------------------------


def test_spack_yaml_has_specs_target_variants_and_mpi_provider() -> None:
    document = yaml.safe_load(spack.spack_yaml(SPACK_ENV))["spack"]
    assert document["specs"] == ["gromacs@2023 +mpi", "py-numpy", "openmpi@4.1"]
    assert document["view"] == "/opt/views/view"
    assert document["concretizer"] == {"unify": True}
    assert document["config"] == {"install_tree": {"root": "/opt/software"}}
    packages = document["packages"]
    assert packages["all"]["target"] == ["x86_64_v3"]
    assert packages["all"]["providers"] == {"mpi": ["openmpi"]}
    assert packages["all"]["compiler"] == ["gcc@12"]
    # the user's packages are merged over orch's: their all:variants win
    assert packages["all"]["variants"] == ["+mpi"]
    assert packages["openmpi"]["buildable"] is False


def test_spack_gpu_variants_and_view_off() -> None:
    cuda = spack.environment({"specs": ["lammps"], "gpu": "cuda", "gpu_arch": "80"})["spack"]
    assert cuda["packages"]["all"]["variants"] == ["+cuda", "cuda_arch=80"]
    rocm = spack.environment({"specs": ["lammps"], "gpu": "rocm", "gpu_arch": "gfx90a",
                              "view": False})["spack"]  # fmt: skip
    assert rocm["packages"]["all"]["variants"] == ["+rocm", "amdgpu_target=gfx90a"]
    assert rocm["view"] is False
    plain = spack.environment({"specs": ["zlib"], "gpu": "none"})["spack"]
    assert "packages" not in plain
    with pytest.raises(spack.SpackError, match="at least one spec"):
        spack.environment({"specs": []})
    with pytest.raises(spack.SpackError, match="gpu must be none, cuda or rocm"):
        spack.environment({"specs": ["zlib"], "gpu": "opencl"})


# -- recipes ---------------------------------------------------------------------------------


def test_spack_image_definition_copies_spack_yaml_and_installs(tmp_path: Path) -> None:
    (tmp_path / "input.dat").write_text("42\n")
    props = {"files": {"input.dat": "/data/input.dat"}, "post": ["echo done > /done"],
             "environment": {"OMP_NUM_THREADS": "4"}, "runscript": "exec gmx \"$@\""}
    spec = image_spec(props, "gromacs", str(tmp_path), SPACK_ENV)
    assert (spec.builder, spec.format, spec.base) == ("apptainer", "sif",
                                                      "spack/ubuntu-jammy:latest")
    context = compose(spec, str(tmp_path))
    text = context.recipe
    assert context.recipe_name == "Apptainer.def"
    assert text.startswith("Bootstrap: docker\nFrom: spack/ubuntu-jammy:latest\n")
    assert "%files\n    spack.yaml /opt/spack-environment/spack.yaml\n" in text
    assert "    input.dat /data/input.dat\n" in text
    assert "    spack -e /opt/spack-environment install --fail-fast\n" in text
    assert "spack env activate --sh -d /opt/spack-environment > " in text
    post = text.split("%post\n", 1)[1]
    # the environment is exported for the build, then Spack installs, then the user's steps
    assert post.index('export OMP_NUM_THREADS="4"') < post.index("spack -e") < post.index("done")
    assert '%environment\n    export OMP_NUM_THREADS="4"\n' in text
    assert ". /opt/spack-environment/activate.sh" in text.split("%environment", 1)[1]
    assert '%runscript\n    exec gmx "$@"\n' in text
    assert context.texts["spack.yaml"][0] == spack.spack_yaml(SPACK_ENV)
    assert context.files == {"input.dat": tmp_path / "input.dat"}


def test_spack_image_dockerfile_for_podman(tmp_path: Path) -> None:
    spec = image_spec({"builder": "podman", "post": ["echo a", "echo b\necho c"]}, "app",
                      str(tmp_path), {"specs": ["zlib"]})  # fmt: skip
    assert spec.format == "oci-archive"
    text = compose(spec, str(tmp_path)).recipe
    lines = text.splitlines()
    assert lines[0] == "FROM spack/ubuntu-jammy:latest"
    assert 'COPY ["spack.yaml", "/opt/spack-environment/spack.yaml"]' in lines
    assert 'COPY ["entrypoint.sh", "/opt/spack-environment/entrypoint.sh"]' in lines
    install = json.loads(next(line for line in lines if "spack -e" in line)[4:])
    assert install[:2] == ["/bin/sh", "-ec"]
    assert "spack -e /opt/spack-environment install --fail-fast" in install[2]
    assert "RUN echo a" in lines
    assert 'RUN ["/bin/sh", "-ec", "echo b\\necho c"]' in lines
    assert 'ENTRYPOINT ["/opt/spack-environment/entrypoint.sh"]' in lines
    assert 'CMD ["/bin/sh", "-c", "/bin/sh"]' in lines


def test_dockerfile_recipe_converted_for_apptainer() -> None:
    text = dockerfile_to_definition(textwrap.dedent("""\
        FROM ubuntu:22.04
        ENV GREETING="hello world" LEVEL=3
        COPY app.py /opt/app/app.py
        ADD data.tar.gz /opt/data
        RUN apt-get update && apt-get install -y python3
        USER nobody
        WORKDIR /opt/app
        CMD ["python3", "app.py"]
    """))
    assert text.startswith("Bootstrap: docker\nFrom: ubuntu:22.04\n")
    assert "    app.py /opt/app/app.py\n" in text
    # spython's archive step lacks -x: orch copies the archive aside and extracts it
    assert "    data.tar.gz /tmp/.orch-add/data.tar.gz\n" in text
    assert "tar -xf /tmp/.orch-add/data.tar.gz -C /opt/data" in text
    assert "su -" not in text and "# USER nobody" in text
    assert 'export GREETING="hello world"' in text.split("%environment", 1)[1]
    assert "    export LEVEL=3\n" in text.split("%post", 1)[1]
    assert '%runscript\n    cd /opt/app\n    exec python3 app.py "$@"\n' in text


def test_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="give the image a base"):
        image_spec({}, "app", str(tmp_path))
    with pytest.raises(ImageError, match="apptainer builds SIF images only"):
        image_spec({"base": "x", "format": "oci-archive"}, "app", str(tmp_path))
    with pytest.raises(ImageError, match=r"files: missing.txt does not exist"):
        image_spec({"base": "x", "files": {"missing.txt": "/x"}}, "app", str(tmp_path))
    with pytest.raises(ImageError, match="podman cannot start from a localimage base"):
        (tmp_path / "base.sif").write_text("x")
        compose(image_spec({"base": "base.sif", "builder": "podman"}, "a", str(tmp_path)),
                str(tmp_path))  # fmt: skip
    spec = image_spec({"base": "x"}, "App Image", str(tmp_path), site_runtime="podman")
    assert (spec.name, spec.builder, spec.format) == ("app-image", "podman", "oci-archive")


def test_the_content_hash_follows_the_bytes_of_the_files(tmp_path: Path) -> None:
    data = tmp_path / "data.txt"
    data.write_text("one")

    def digest(**props: Any) -> str:
        spec = image_spec({"base": "scratch", "files": {"data.txt": "/data.txt"}, **props},
                          "app", str(tmp_path))  # fmt: skip
        return content_hash(spec, compose(spec, str(tmp_path)))

    first = digest()
    assert digest() == first
    os.utime(data, (1, 1))
    assert digest() == first  # a touch changes nothing
    data.write_text("two")
    assert digest() != first
    data.write_text("one")
    assert digest() == first
    assert digest(post=["true"]) != first
    assert digest(builder="podman") != first
    data.chmod(0o755)
    assert digest() != first  # the executable bit is part of the file


def test_cache_folder() -> None:
    assert cache_root({"ORCH_CACHE_HOME": "/c", "XDG_CACHE_HOME": "/x"}) == Path("/c/images")
    assert cache_root({"XDG_CACHE_HOME": "/x"}) == Path("/x/orch/images")
    assert cache_root({}) == Path.home() / ".cache" / "orch" / "images"


# -- podman ----------------------------------------------------------------------------------


def busybox_image(folder: Path, **props: Any) -> dict[str, Any]:
    """An image of busybox alone, with a greeting as its command."""
    return {
        "base": "scratch",
        "files": busybox_files(folder),
        "post": [INSTALL_BUSYBOX, "echo built > /built.txt"],
        "environment": {"GREETING": "hello images"},
        "runscript": 'echo "$GREETING: $(cat /built.txt)"',
        **props,
    }


def test_podman_builds_a_runnable_image_once(tmp_path: Path, podman_env: Podman) -> None:
    props = busybox_image(tmp_path, builder="podman", image_name="hello")
    first = Run(task_for(tmp_path, props))
    path = Path(first.output("image_path"))
    digest = first.output("image_hash")
    assert path == tmp_path / "cache" / "images" / f"hello-{digest[:12]}.tar"
    assert (first.output("built"), first.output("transferred")) == ("true", "false")
    assert "building image hello-" in first.log and "STEP 1/" in first.log  # podman's output
    run = podman_env("run", "--rm", f"oci-archive:{path}")
    assert run.stdout.strip() == "hello images: built"
    assert not list(path.parent.glob(".*part"))  # written beside, then renamed

    second = Run(task_for(tmp_path, props))
    assert second.output("image_path") == str(path) and second.output("built") == "false"
    assert f"image hello-{digest[:12]} unchanged: not rebuilt" in second.log
    assert "STEP" not in second.log  # podman did not run
    mtime = path.stat().st_mtime_ns

    forced = Run(task_for(tmp_path, props), force=True)
    assert forced.output("built") == "true" and forced.output("image_hash") == digest
    assert "--force-rebuild" in forced.log and "STEP 1/" in forced.log
    assert path.stat().st_mtime_ns != mtime
    assert second.seconds < first.seconds


def test_a_failing_build_says_the_exit_status_and_last_lines(
    tmp_path: Path, podman_env: Podman
) -> None:
    props = busybox_image(tmp_path, builder="podman",
                          post=[INSTALL_BUSYBOX, "echo the step that breaks >&2; exit 7"])
    run = Run(task_for(tmp_path, props))
    assert run.result.status == "failed" and run.result.rc not in (0, None)
    assert f"image build failed on localhost (exit status {run.result.rc})" in run.result.message
    assert any("the step that breaks" in line for line in run.result.stdout_tail)
    assert not list((tmp_path / "cache" / "images").glob("app-*"))


def test_a_missing_builder_is_named_with_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    run = Run(task_for(tmp_path, {"base": "scratch", "builder": "apptainer"}))
    assert run.result.status == "failed"
    assert run.result.message.startswith("apptainer not found on localhost (not on PATH): "
                                         "install Apptainer")  # fmt: skip


def test_cancel_stops_the_whole_build(tmp_path: Path, podman_env: Podman) -> None:
    """podman runs build steps in containers outside its process group: cancel ends them too."""
    marker = "sleep 97"
    props = busybox_image(tmp_path, builder="podman", post=[INSTALL_BUSYBOX, marker])
    cancel = threading.Event()
    lines: list[str] = []

    def sink(_stream: str, line: str) -> None:
        lines.append(line)
        if marker in line:  # the step has started
            threading.Timer(1.0, cancel.set).start()

    context = RunContext(transport=lambda host: LocalTransport(), cancel=cancel, log=sink)
    started = time.monotonic()
    result = ImageExecutor().run(task_for(tmp_path, props), context)
    assert result.status == "cancelled", (result, lines)
    assert time.monotonic() - started < 30
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert not [line for line in ps.splitlines() if line.strip().endswith(marker)]
    assert not list((tmp_path / "cache" / "images").glob("app-*"))


def test_build_on_the_site_and_remove_at_delete(
    tmp_path: Path, podman_env: Podman, ssh_host: Host, ssh_pool: TransportPool,
    site_work_dir: Path,
) -> None:
    """build_on: site: the build folder goes to the login node and podman runs there (its
    settings come from the site's environment in sites.yaml, as a site's modules would)."""
    from orch.sites.config import Site

    site = Site("hpc1", "127.0.0.1", ssh_host.port, "root", work_dir=str(site_work_dir),
                container_runtime="podman", environment=podman_env.env)  # fmt: skip
    props = busybox_image(tmp_path, build_on="site", keep_on_site=False)
    first = Run(task_for(tmp_path, props, host=ssh_host, site=site), transport=ssh_pool.get)
    image = Path(first.output("image_path"))
    assert image.parent == site_work_dir / "images" and image.suffix == ".tar"
    assert (first.output("built"), first.output("transferred")) == ("true", "false")
    assert "building image app-" in first.log and "on hpc1" in first.log
    assert not (tmp_path / "cache" / "images").exists()  # nothing built on orch's machine
    assert sorted(p.name for p in image.parent.iterdir()) == [image.name]  # no leftovers
    assert podman_env("run", "--rm", f"oci-archive:{image}").stdout.strip() == (
        "hello images: built")

    again = Run(task_for(tmp_path, props, host=ssh_host, site=site), transport=ssh_pool.get)
    assert again.output("built") == "false"
    assert f"image {image.stem} already on hpc1: not rebuilt" in again.log

    deleted = Run(task_for(tmp_path, props, host=ssh_host, site=site, operation="delete"),
                  transport=ssh_pool.get)  # fmt: skip
    assert deleted.result.ok and not image.exists()
    assert f"image {image.stem} removed from hpc1" in deleted.log


# -- Apptainer -------------------------------------------------------------------------------


def test_apptainer_builds_runs_and_layers_on_a_local_image(
    tmp_path: Path, apptainer: Path
) -> None:
    props = busybox_image(tmp_path, image_name="base")
    first = Run(task_for(tmp_path, props))
    sif = Path(first.output("image_path"))
    assert sif.suffix == ".sif" and first.output("built") == "true"
    ran = subprocess.run([str(apptainer), "run", str(sif)], capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert ran.stdout.strip() == "hello images: built"
    assert Run(task_for(tmp_path, props)).output("built") == "false"

    layered = {"base": str(sif), "post": ["echo layered > /layer.txt"],
               "runscript": 'cat /layer.txt; echo "$GREETING"'}  # fmt: skip
    second = Run(task_for(tmp_path, layered, node="layered"))
    ran = subprocess.run([str(apptainer), "run", second.output("image_path")],
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert ran.stdout.split() == ["layered", "hello", "images"]


def test_apptainer_builds_a_dockerfile_and_converts_podman_images(
    tmp_path: Path, apptainer: Path, podman_env: Podman
) -> None:
    busybox_files(tmp_path)
    dockerfile = textwrap.dedent(f"""\
        FROM scratch
        COPY busybox /bin/busybox
        COPY sh /bin/sh
        ENV GREETING="from a Dockerfile"
        RUN {INSTALL_BUSYBOX} && echo "$GREETING" > /greeting
        CMD ["/bin/cat", "/greeting"]
    """)
    files = {"busybox": "/bin/busybox", "sh": "/bin/sh"}  # put in the build folder
    converted = Run(task_for(tmp_path, {"recipe": dockerfile, "files": files}))
    sif = converted.output("image_path")
    ran = subprocess.run([str(apptainer), "run", sif], capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == "from a Dockerfile"

    props = busybox_image(tmp_path, builder="podman", format="sif", image_name="via-oci")
    via_oci = Path(Run(task_for(tmp_path, props)).output("image_path"))
    assert via_oci.suffix == ".sif" and not list(via_oci.parent.glob("*.oci.tar"))
    ran = subprocess.run([str(apptainer), "run", str(via_oci)], capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert ran.stdout.strip() == "hello images: built"


# -- Spack, with a stand-in ------------------------------------------------------------------


def spack_base(folder: Path, builder: str) -> str:
    """A base image with busybox and the stand-in ``spack`` on PATH, as ``base`` names it."""
    (folder / "spack").write_text(SPACK_STAND_IN)
    (folder / "spack").chmod(0o755)
    props = busybox_image(folder, builder=builder, image_name="spack-base")
    props["files"]["spack"] = "/usr/local/bin/spack"
    path = Run(task_for(folder, props, node="spack-base")).output("image_path")
    return path if builder == "apptainer" else f"oci-archive:{path}"


@pytest.mark.parametrize("builder", ["podman", "apptainer"])
def test_a_spack_image_installs_its_environment(
    tmp_path: Path, builder: str, request: pytest.FixtureRequest
) -> None:
    """The base image's ``spack`` is a stand-in, not Spack: Spack cannot be installed here
    (it is on neither PyPI nor Debian). It accepts the commands orch's recipe runs, records
    them, and puts a ``hello`` program in the view, which the image's runscript then runs
    with the environment that ``spack env activate --sh`` printed."""
    engine = request.getfixturevalue("podman_env" if builder == "podman" else "apptainer")
    environment = {"specs": ["hello@1.0"], "mpi": "openmpi@4.1", "target": "x86_64"}
    props = {"builder": builder, "base": spack_base(tmp_path, builder), "runscript": "hello",
             "environment": {"GREETING": "from orch"}}  # fmt: skip
    run = Run(task_for(tmp_path, props, related={"spack_environment": environment}))
    image = run.output("image_path")
    if builder == "podman":
        assert isinstance(engine, Podman)
        hello = engine("run", "--rm", f"oci-archive:{image}").stdout
        calls = engine("run", "--rm", "--entrypoint", "/bin/cat", f"oci-archive:{image}",
                       "/spack-calls.log", "/opt/spack-environment/spack.yaml").stdout
    else:
        hello = subprocess.run([str(engine), "run", image], capture_output=True, text=True,
                               check=True).stdout  # fmt: skip
        calls = subprocess.run(
            [str(engine), "exec", image, "cat", "/spack-calls.log",
             "/opt/spack-environment/spack.yaml"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    assert hello.strip() == "hello from the Spack view (from orch)"
    log, _, spack_yaml = calls.partition("spack:\n")
    assert log.splitlines() == [
        "spack -e /opt/spack-environment concretize",
        "spack -e /opt/spack-environment install --fail-fast",
        "spack env activate --sh -d /opt/spack-environment",
    ]
    assert "spack:\n" + spack_yaml == spack.spack_yaml(environment)


# -- orch deploy: an image hosted on a site ---------------------------------------------------


SITE_BLUEPRINT = """
tosca_definitions_version: tosca_simple_yaml_1_3
imports:
  - orch-hpc:1.0.0
topology_template:
  inputs:
    site: {type: string, default: hpc1}
  node_templates:
    login:
      type: orch.nodes.Site
      properties:
        site: {get_input: site}
    hello:
      type: orch.nodes.ContainerImage
      properties:
        base: scratch
        files: {busybox: /bin/busybox, sh: /bin/sh}
        post:
          - %s
        environment: {GREETING: hello from the site}
        runscript: echo "$GREETING"
      requirements:
        - host: login
  outputs:
    image_path: {value: {get_attribute: [hello, image_path]}}
    image_hash: {value: {get_attribute: [hello, image_hash]}}
    built: {value: {get_attribute: [hello, built]}}
    transferred: {value: {get_attribute: [hello, transferred]}}
"""


class SiteDeploy:
    """The orch CLI in one folder, with a sites.yaml naming the test sshd as site hpc1."""

    def __init__(self, root: Path, server: SshServer, work_dir: Path, podman: Podman):
        self.root = root
        self.known_hosts = str(server.known_hosts)
        site = {"host": "127.0.0.1", "port": server.port, "user": server.unprivileged_user,
                "identity_file": str(server.client_key), "known_hosts": self.known_hosts,
                "work_dir": str(work_dir), "container_runtime": "podman"}  # fmt: skip
        (root / "sites.yaml").write_text(f"sites:\n  hpc1: {json.dumps(site)}\n")
        (root / "home").mkdir(exist_ok=True)
        self.env = {**os.environ, **podman.env, "NO_COLOR": "1", "HOME": str(root / "home")}
        self.env.pop("ORCH_SITES", None)

    def __call__(self, *args: str, check: int = 0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*ORCH, *args], cwd=self.root, capture_output=True, text=True,
                              env=self.env, timeout=240)  # fmt: skip
        assert proc.returncode == check, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def deploy(self, *extra: str, check: int = 0) -> tuple[float, subprocess.CompletedProcess]:
        started = time.monotonic()
        proc = self("deploy", "blueprint.yaml", "-n", "images", "--known-hosts",
                    self.known_hosts, *extra, check=check)  # fmt: skip
        return time.monotonic() - started, proc

    def outputs(self) -> dict[str, Any]:
        return json.loads(self("outputs", "images").stdout)


@pytest.fixture
def site_work_dir() -> Iterator[Path]:
    """The site's work_dir: a folder orchtest can write (pytest's tmp folders are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="orch-images-site-"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_deploy_builds_and_places_an_image_once(
    tmp_path: Path, ssh_server: SshServer, site_work_dir: Path, podman_env: Podman
) -> None:
    busybox_files(tmp_path)
    (tmp_path / "blueprint.yaml").write_text(SITE_BLUEPRINT % INSTALL_BUSYBOX)
    orch = SiteDeploy(tmp_path, ssh_server, site_work_dir, podman_env)

    first_seconds, _ = orch.deploy()
    first = orch.outputs()
    assert (first["built"], first["transferred"]) == (True, True)
    placed = Path(first["image_path"])
    assert placed == site_work_dir / "images" / f"hello-{first['image_hash'][:12]}.tar"
    assert placed.owner() == ssh_server.unprivileged_user
    cached = tmp_path / "cache" / "images" / placed.name
    assert placed.read_bytes() == cached.read_bytes()
    ran = podman_env("run", "--rm", f"oci-archive:{placed}")
    assert ran.stdout.strip() == "hello from the site"

    orch("undeploy", "images", "--known-hosts", orch.known_hosts)
    assert placed.is_file()  # keep_on_site
    second_seconds, _ = orch.deploy()
    second = orch.outputs()
    assert (second["built"], second["transferred"]) == (False, False)
    assert second["image_path"] == first["image_path"]
    logs = orch("logs", "images").stdout
    assert f"image {placed.stem} unchanged: not rebuilt" in logs
    assert f"image {placed.stem} already on hpc1: not transferred" in logs
    print(f"\nfirst deploy {first_seconds:.1f} s (build and transfer), "
          f"second {second_seconds:.1f} s (cached, already on the site)")  # fmt: skip
    assert second_seconds < first_seconds

    orch("undeploy", "images", "--known-hosts", orch.known_hosts)
    orch.deploy("--force-rebuild")
    forced = orch.outputs()
    assert (forced["built"], forced["transferred"]) == (True, True)
    assert forced["image_hash"] == first["image_hash"]


def test_a_failing_build_fails_the_deploy_without_a_traceback(
    tmp_path: Path, ssh_server: SshServer, site_work_dir: Path, podman_env: Podman
) -> None:
    busybox_files(tmp_path)
    failing = f"{INSTALL_BUSYBOX} && echo no such tool here && exit 3"
    (tmp_path / "blueprint.yaml").write_text(SITE_BLUEPRINT % failing)
    orch = SiteDeploy(tmp_path, ssh_server, site_work_dir, podman_env)
    _, proc = orch.deploy(check=4)
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "image build failed on localhost (exit status 3)" in proc.stderr
    assert "no such tool here" in proc.stderr
    assert not (site_work_dir / "images").exists()


# -- the types -------------------------------------------------------------------------------


TYPES_BLUEPRINT = """
imports:
  - orch-hpc:1.0.0
topology_template:
  node_templates:
    login:
      type: orch.nodes.Site
      properties: {site: hpc1}
    env:
      type: orch.nodes.SpackEnvironment
      properties:
        specs: [gromacs@2023 +mpi]
        mpi: openmpi@4.1
        gpu: %s
        gpu_arch: "80"
        packages: {openmpi: {buildable: false}}
    gromacs:
      type: orch.nodes.ContainerImage
      properties: {builder: apptainer, keep_on_site: false}
      requirements:
        - spack_environment: env
        - host: login
    md:
      type: orch.nodes.ApptainerJob
      properties: {command: gmx mdrun}
      requirements:
        - host: login
        - image: gromacs
"""


def test_the_types_validate(bp: Blueprints) -> None:
    assert bp.check(TYPES_BLUEPRINT % "cuda").ok
    wrong = bp.check(TYPES_BLUEPRINT % "opencl")
    assert not wrong.ok and "opencl" in wrong.describe()
