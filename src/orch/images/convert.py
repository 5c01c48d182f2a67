"""A Dockerfile given as an image's ``recipe``, converted for an Apptainer build with
spython's Dockerfile parser (orch writes the definition: see ``recipes``)."""

from __future__ import annotations

import os
import re
import shlex
import tempfile

from spython.logger import bot
from spython.logger.message import QUIET
from spython.main.parse.parsers import DockerParser
from spython.main.parse.recipe import Recipe

from orch.images.base import parse_base
from orch.images.recipes import definition
from orch.images.spec import ImageError

ARCHIVE_STEP = re.compile(r"^tar -zvf (\S+) (\S+)$")
"""The step spython writes for ``ADD x.tar.gz DEST`` (it lacks ``-x``)."""
ADD_DIR = "/tmp/.orch-add"


def is_definition(text: str) -> bool:
    """Whether a recipe is an Apptainer definition (it has a ``Bootstrap:`` header)."""
    return re.search(r"^\s*Bootstrap\s*:", text, re.IGNORECASE | re.MULTILINE) is not None


def _parse(text: str) -> dict[str, Recipe]:
    bot.level = QUIET  # its warnings go to stdout, which is orch's
    with tempfile.TemporaryDirectory(prefix="orch-dockerfile-") as folder:
        path = os.path.join(folder, "Dockerfile")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        try:
            # the parser parses in its constructor; calling parse() again would duplicate
            return DockerParser(path).recipe
        except SystemExit as exc:  # spython's errors exit
            raise ImageError(f"cannot read the Dockerfile: {bot.history[-1:]}") from exc
        finally:
            bot.history.clear()


def _fix_archives(recipe: Recipe) -> None:
    """``ADD archive DEST`` unpacks into DEST: copy the archive aside, then extract it."""
    for index, step in enumerate(recipe.install):
        match = ARCHIVE_STEP.match(str(step))
        if not match:
            continue
        source, dest = match.groups()
        staged = f"{ADD_DIR}/{os.path.basename(source)}"
        for pair in recipe.files:
            if pair == [source, dest]:
                pair[1] = staged
        recipe.install[index] = (
            f"mkdir -p {dest} && tar -xf {staged} -C {dest} && rm -rf {ADD_DIR}"
        )


def _unquoted(pair: str) -> str:
    name, _, value = pair.partition("=")
    try:
        return f"{name}={' '.join(shlex.split(value))}"
    except ValueError:
        return pair


def _export_env(recipe: Recipe) -> None:
    """ENV values hold for the later RUN steps: exported where they stand in %post, as
    Docker does; %environment gets them unquoted (its writer quotes)."""
    environ = set(recipe.environ)
    recipe.install = [f"export {s}" if s in environ else s for s in recipe.install]
    recipe.environ = [_unquoted(pair) for pair in recipe.environ]


def dockerfile_to_definition(text: str) -> str:
    """An Apptainer definition doing what a (single-stage) Dockerfile does."""
    stages = _parse(text)
    if len(stages) != 1:
        raise ImageError("a multi-stage Dockerfile cannot be turned into an Apptainer "
                         "definition: use builder podman (format sif converts its result)")
    recipe = next(iter(stages.values()))
    if not recipe.fromHeader:
        raise ImageError("the Dockerfile has no FROM")
    _fix_archives(recipe)
    _export_env(recipe)
    base = parse_base(recipe.fromHeader, None)
    return definition(recipe, base)
