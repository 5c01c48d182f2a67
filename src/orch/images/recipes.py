"""Build recipes: an Apptainer definition or a Dockerfile, from one ``spython`` Recipe.

A generated image is a Recipe (base, files, environment, build steps) that one writer per
builder turns into text. A Dockerfile given as ``recipe`` for an Apptainer build goes through
spython's Dockerfile parser to a Recipe. orch writes the text itself rather than with
spython's writers, which only know ``Bootstrap: docker``, turn ``USER`` into ``su -`` and
collapse the blank lines of scripts.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass

from spython.main.parse.recipe import Recipe

from orch.images.base import Base

INDENT = "    "
SHELL = "/bin/sh"


@dataclass(frozen=True)
class Steps:
    """What a generated image adds to its base."""

    files: tuple[tuple[str, str], ...] = ()
    """(name in the build folder, path in the image)."""
    environment: tuple[tuple[str, str], ...] = ()
    scripts: tuple[str, ...] = ()
    """Build steps, each a shell script (one or more lines)."""
    runscript: str | None = None
    profile: tuple[str, ...] = ()
    """Shell lines every run of the image sources first (e.g. Spack's activate.sh)."""
    entrypoint: str | None = None
    """For OCI images with a profile: the script (in the image) that sources it."""


def recipe_of(base: Base, steps: Steps, *, oci: bool) -> Recipe:
    """The spython Recipe of a generated image (``oci``: for a Dockerfile, where the profile
    is sourced by an entrypoint script rather than by Apptainer's %environment)."""
    recipe = Recipe("orch")
    recipe.fromHeader = base.source or "scratch"
    recipe.files = [[src, dest] for src, dest in steps.files]
    recipe.environ = [f"{k}={v}" for k, v in steps.environment]
    recipe.install = list(steps.scripts)
    if not oci and steps.environment:
        # Apptainer's %environment is for runs only: the build steps see it exported here
        recipe.install.insert(0, "\n".join(_exports(recipe.environ)))
    if steps.runscript:
        recipe.cmd = [SHELL, "-c", steps.runscript]
    if oci and steps.entrypoint:
        recipe.entrypoint = [steps.entrypoint]
    return recipe


# -- Apptainer --------------------------------------------------------------------------------


def _section(name: str, lines: list[str]) -> list[str]:
    if not any(line.strip() for line in lines):
        return []
    return ["", f"%{name}", *(INDENT + line if line else "" for line in lines)]


def _double_quoted(value: str) -> str:
    """A value in double quotes: ``$VARIABLES`` expand, as in a Dockerfile's ENV."""
    return '"' + re.sub(r'(["\\`])', r"\\\1", value) + '"'


def _exports(environ: list[str]) -> list[str]:
    exports = []
    for pair in environ:
        name, _, value = pair.partition("=")
        exports.append(f"export {name}={_double_quoted(value)}")
    return exports


def runscript_of(recipe: Recipe) -> list[str]:
    """A runscript from a Recipe's command: an ``sh -c`` body as is, else ``exec`` of the
    entrypoint and command with the run's arguments, as Docker would start it."""
    command = recipe.cmd
    entry = recipe.entrypoint
    if entry is None and isinstance(command, list) and command[:2] == [SHELL, "-c"]:
        return str(command[2]).splitlines() if len(command) > 2 else []
    words: list[str] = []
    for part in (entry, command):
        if isinstance(part, list):
            words.extend(shlex.quote(str(w)) for w in part)
        elif part:
            words.append(str(part))
    start = [f"cd {shlex.quote(recipe.workdir)}"] if recipe.workdir else []
    return [*start, f'exec {" ".join(words)} "$@"'] if words else start


def _post_lines(recipe: Recipe) -> list[str]:
    lines: list[str] = []
    for script in recipe.install:
        if re.match(r"^USER\s", script):
            lines.append(f"# {script}: Apptainer runs as the user who starts the image")
            continue
        lines.extend(str(script).splitlines())
    return lines


def definition(recipe: Recipe, base: Base, profile: tuple[str, ...] = ()) -> str:
    """An Apptainer definition file."""
    lines = [f"Bootstrap: {base.kind}"]
    if base.source:
        lines.append(f"From: {base.source}")
    lines += _section("files", [f"{src} {dest}" for src, dest in recipe.files])
    lines += _section("environment", [*_exports(recipe.environ), *profile])
    lines += _section("post", _post_lines(recipe) if recipe.install else [])
    lines += _section("runscript", runscript_of(recipe))
    lines += _section("labels", [" ".join(str(w) for w in label) for label in recipe.labels])
    return "\n".join(lines) + "\n"


# -- Dockerfile ------------------------------------------------------------------------------


def _run(script: str) -> str:
    lines = [line for line in script.splitlines() if line.strip()]
    if len(lines) == 1:
        return f"RUN {lines[0]}"
    # exec form: JSON keeps the newlines of a many-line script
    return "RUN " + json.dumps([SHELL, "-ec", script])


def dockerfile(recipe: Recipe, base: Base) -> str:
    """A Dockerfile (podman and buildah build it)."""
    lines = [f"FROM {base.from_line()}"]
    lines += [f"COPY {json.dumps([src, dest])}" for src, dest in recipe.files]
    for pair in recipe.environ:
        name, _, value = pair.partition("=")
        lines.append(f"ENV {name}={json.dumps(value)}")
    lines += [_run(script) for script in recipe.install if script.strip()]
    if recipe.entrypoint:
        lines.append(f"ENTRYPOINT {json.dumps(recipe.entrypoint)}")
    if recipe.cmd:
        lines.append(f"CMD {json.dumps(recipe.cmd)}")
    return "\n".join(lines) + "\n"
