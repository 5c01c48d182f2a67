"""The build folder of an image: the recipe, spack.yaml and the files the recipe copies,
each under the name the recipe uses for it."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from orch.images import spack
from orch.images.base import parse_base
from orch.images.convert import dockerfile_to_definition, is_definition
from orch.images.recipes import SHELL, Steps, definition, dockerfile, recipe_of
from orch.images.spec import ImageError, ImageSpec

DEFINITION = "Apptainer.def"
DOCKERFILE = "Dockerfile"
ENTRYPOINT = f"{spack.ENV_DIR}/entrypoint.sh"
ENTRYPOINT_TEXT = f'#!/bin/sh\n. {spack.ACTIVATE}\nexec "$@"\n'


@dataclass
class BuildContext:
    recipe_name: str
    recipe: str
    texts: dict[str, tuple[str, int]] = field(default_factory=dict)
    """Generated files: name -> (text, mode)."""
    files: dict[str, Path] = field(default_factory=dict)
    """Name in the build folder -> the file or folder on orch's machine."""

    def write(self, folder: Path) -> None:
        """Lay the build folder out (hard links where possible: bases can be large)."""
        (folder / self.recipe_name).write_text(self.recipe, "utf-8")
        for name, (text, mode) in self.texts.items():
            (folder / name).write_text(text, "utf-8")
            os.chmod(folder / name, mode)
        for name, source in self.files.items():
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target, symlinks=True)
                continue
            try:
                os.link(source, target)
            except OSError:
                shutil.copy2(source, target)


def _context_name(path: Path, base_dir: Path) -> str:
    try:
        relative = path.relative_to(base_dir)
    except ValueError:
        return f"files/{path.name}"
    name = relative.as_posix()
    return name if ".." not in relative.parts else f"files/{path.name}"


def _files(spec: ImageSpec, base_dir: Path) -> tuple[dict[str, Path], list[tuple[str, str]]]:
    """The build folder's copies of ``files`` and the (name, path in image) pairs."""
    names: dict[str, Path] = {}
    pairs = []
    for path, target in spec.files:
        name = _context_name(path, base_dir)
        if names.get(name, path) != path:
            raise ImageError(f"files: {path} and {names[name]} would both be {name}")
        if any(c.isspace() for c in name + target):
            raise ImageError(f"files: no spaces in {path} -> {target}, please")
        names[name] = path
        pairs.append((name, target))
    return names, pairs


def _steps(spec: ImageSpec, copies: list[tuple[str, str]]) -> tuple[Steps, dict]:
    texts: dict[str, tuple[str, int]] = {}
    scripts = list(spec.post)
    profile: tuple[str, ...] = ()
    entrypoint = None
    if spec.spack is not None:
        texts["spack.yaml"] = (spack.spack_yaml(spec.spack), 0o644)
        copies = [("spack.yaml", f"{spack.ENV_DIR}/spack.yaml"), *copies]
        scripts.insert(0, spack.install_script())
        profile = (f"if [ -f {spack.ACTIVATE} ]; then . {spack.ACTIVATE}; fi",)
        if spec.builder == "podman":
            texts["entrypoint.sh"] = (ENTRYPOINT_TEXT, 0o755)
            copies.append(("entrypoint.sh", ENTRYPOINT))
            entrypoint = ENTRYPOINT
    runscript = spec.runscript or (SHELL if entrypoint else None)
    steps = Steps(tuple(copies), tuple(spec.environment.items()), tuple(scripts), runscript,
                  profile, entrypoint)
    return steps, texts


def _given(spec: ImageSpec, files: dict[str, Path]) -> BuildContext:
    text = spec.recipe or ""
    if is_definition(text):
        if spec.builder != "apptainer":
            raise ImageError("the recipe is an Apptainer definition: use builder apptainer")
        return BuildContext(DEFINITION, text, files=files)
    if spec.builder == "podman":
        return BuildContext(DOCKERFILE, text, files=files)
    return BuildContext(DEFINITION, dockerfile_to_definition(text), files=files)


def compose(spec: ImageSpec, base_dir: str | None) -> BuildContext:
    """The build folder of an image: its recipe given or generated, and its files."""
    folder = Path(os.path.abspath(base_dir or "."))
    files, copies = _files(spec, folder)
    if spec.recipe:
        return _given(spec, files)
    base = parse_base(spec.base or "", folder)
    if base.local_file is not None:
        files[base.source] = base.local_file
    steps, texts = _steps(spec, copies)
    oci = spec.builder == "podman"
    recipe = recipe_of(base, steps, oci=oci)
    if oci:
        return BuildContext(DOCKERFILE, dockerfile(recipe, base), texts, files)
    return BuildContext(DEFINITION, definition(recipe, base, steps.profile), texts, files)
