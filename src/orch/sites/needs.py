"""What a blueprint will need of each site it runs on, and of orch's own machine, worked out
from its model before anything runs (``orch sites check --blueprint``).

Each node is read the way its executor will read it at deploy time: the same properties (a
value only known once deployed, such as another node's attribute, is left out), the same site
defaults (partition, account, qos, modules, container_runtime) and the same image settings.
Batch and PyCOMPSs jobs need a batch scheduler on their site (``scheduler: slurm`` or
``sge``) and its commands, their modules (hence ``module``), their partition (on SGE: a queue),
account and qos (which SGE cannot honour), on SGE the parallel environment of a job of more than
one slot, and ``enqueue_compss`` with the modules loaded; images need their builder where they
are built (orch's machine or the login node) and a runtime where they run.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from typing import Any, Literal

from orch.sites.config import Site, SiteBook
from orch.tosca.model import Model, Node

Kind = Literal["scheduler", "command", "module", "partition", "account", "qos",
               "parallel_environment", "unsupported"]

SLURM_COMMANDS = {
    "sbatch": "submits the job",
    "squeue": "watches the job",
    "scancel": "cancels the job",
}
SGE_COMMANDS = {
    "qsub": "submits the job",
    "qstat": "watches the job",
    "qdel": "cancels the job",
}
SCHEDULER_COMMANDS = {"slurm": SLURM_COMMANDS, "sge": SGE_COMMANDS, "pbs": SGE_COMMANDS}
"""The job commands of each scheduler (a site with ``scheduler: none`` has none)."""
ACCOUNTING = {
    "slurm": ("sacct", "judges a job Slurm has forgotten"),
    "sge": ("qacct", "judges a job that has left qstat"),
}
"""The optional accounting command of each scheduler (without it: a fallback)."""
SCHEDULER_WHY = {"slurm": "is a Slurm job", "sge": "is an SGE job", "pbs": "is a PBS job"}
SGE_REFUSES = {
    "qos": "SGE has no QoS: remove it (or use a queue: the partition property)",
    "nodes": "SGE allocates slots, not nodes: set tasks (the parallel environment's "
    "allocation rule spreads them)",
    "tasks_per_node": "the parallel environment's allocation rule places tasks on SGE: set "
    "tasks only",
    "launcher": "srun is Slurm's: use launcher auto (srun on Slurm, mpirun on SGE) or mpirun",
    "mpi": "it is srun's --mpi plugin: remove it",
}
"""What a job may ask that SGE cannot honour (the SGE executor refuses the job), and the fix."""
FLAGS = {
    "slurm": {"partition": "sbatch --partition", "account": "sbatch --account",
              "qos": "sbatch --qos"},
    "sge": {"partition": "qsub -q", "account": "qsub -A"},
    "pbs": {"partition": "qsub -q", "account": "qsub -A"},
    "pycompss": {"partition": "enqueue_compss --queue", "account": "enqueue_compss "
                 "--project_name", "qos": "enqueue_compss --qos"},
}  # fmt: skip
"""How each kind of job passes its partition, account and qos on (a batch job on SGE: qsub's
options)."""
YORC_PYCOMPSS = "org.eflows4hpc.pycompss.plugin.artifacts.Deployment"


@dataclass(frozen=True)
class Need:
    """One thing one node needs on one machine."""

    kind: Kind
    name: str
    """The command, module, partition, account or qos (for a command: the first choice)."""
    node: str
    why: str
    """What the node does with it, in a few words: 'submits the job'."""
    value: str = ""
    """For an ``unsupported`` need: the value asked (qos 'high')."""
    after: tuple[str, ...] = ()
    """Modules loaded before the command is looked up (enqueue_compss after COMPSs')."""
    any_of: tuple[str, ...] = ()
    """Commands that serve as well (singularity for apptainer)."""
    optional: bool = False
    """Missing, it only costs a fallback (sacct, qacct): reported, not failed."""

    @property
    def commands(self) -> tuple[str, ...]:
        return self.any_of or (self.name,)


@dataclass
class SiteNeeds:
    """What the nodes that run on one site need there."""

    site: str
    nodes: list[str] = field(default_factory=list)
    needs: list[Need] = field(default_factory=list)

    def of(self, kind: Kind) -> dict[str, list[Need]]:
        """The needs of one kind by name, in the blueprint's order."""
        found: dict[str, list[Need]] = {}
        for need in self.needs:
            if need.kind == kind:
                found.setdefault(need.name, []).append(need)
        return found

    def modules(self) -> list[str]:
        return list(self.of("module"))

    def plain_commands(self) -> list[str]:
        """Commands looked up as they are (no module loaded first)."""
        found = [c for n in self.needs if n.kind == "command" and not n.after for c in n.commands]
        return list(dict.fromkeys(found))

    def loaded_commands(self) -> list[tuple[tuple[str, ...], str]]:
        """(modules, command) pairs: the command is looked up once the modules are loaded."""
        found = [(n.after, n.name) for n in self.needs if n.kind == "command" and n.after]
        return list(dict.fromkeys(found))


@dataclass
class BlueprintNeeds:
    blueprint: str
    sites: dict[str, SiteNeeds] = field(default_factory=dict)
    local: list[Need] = field(default_factory=list)
    """What orch's own machine needs (builders of images built here)."""
    notes: list[str] = field(default_factory=list)
    """What was not worked out, and why."""

    def site(self, name: str) -> SiteNeeds:
        return self.sites.setdefault(name, SiteNeeds(name))


# -- from the model -----------------------------------------------------------------------------


def blueprint_needs(
    blueprint: str, model: Model, inputs: dict[str, Any], book: SiteBook
) -> BlueprintNeeds:
    """The needs of every node, by the site it runs on. A site the blueprint names that
    sites.yaml lacks raises ``SitesError`` (from ``book.get``)."""
    from orch.engine.evaluate import Evaluator
    from orch.plan.instances import make_instances

    instances = make_instances(model)
    evaluator = Evaluator(model, instances, inputs, {}, {})
    found = BlueprintNeeds(blueprint)
    for instance in instances.values():
        if instance.index:  # the instances of one template need the same
            continue
        node = model.nodes[instance.node]
        kind = executor_of(node)
        if kind is None:
            continue
        site = _site_of(evaluator, instance.id, book, found)
        props = _properties(evaluator, node, instance.id)
        if site is not None:
            found.site(site.name).nodes.append(node.name)
        if kind in ("slurm", "pycompss"):
            _job(found, node, kind, props, site)
        elif kind == "image":
            _image(found, model, evaluator, node, props, site)
        elif kind == "stage" and site is not None:
            found.site(site.name).needs.append(Need(
                "command", "sha256sum", node.name, "compares files by sha256",
                any_of=("sha256sum", "shasum"),
            ))  # fmt: skip
    return found


def executor_of(node: Node) -> str | None:
    """Which of orch's built-in executors carries out the node: slurm, pycompss, image,
    stage (None for scripts, playbooks and nodes with nothing to do)."""
    for operations in node.interfaces.values():
        for operation in operations.values():
            ref = operation.implementation
            if ref is not None and ref.builtin:
                return "pycompss" if ref.type == YORC_PYCOMPSS else ref.name
    return None


def _site_of(evaluator: Any, instance_id: str, book: SiteBook, found: BlueprintNeeds
             ) -> Site | None:
    """The sites.yaml site whose login node hosts the instance (None: not on a site)."""
    from orch.engine.evaluate import EvaluationError, Scope
    from orch.engine.hosts import compute_of

    compute = compute_of(evaluator, instance_id)
    if compute is None:
        return None
    node = evaluator.model.nodes[evaluator.instances[compute].node]
    if "site" not in node.properties:
        return None
    try:
        name = evaluator.value(node.properties["site"], Scope(instance=compute))
    except EvaluationError as exc:
        found.notes.append(f"{node.name}: which site is not known before deploying ({exc})")
        return None
    return book.get(str(name)) if name else None


def _properties(evaluator: Any, node: Node, instance_id: str) -> dict[str, Any]:
    """The node's properties as its executor will see them; those only known once deployed
    (another node's attribute) are left out."""
    from orch.engine.evaluate import EvaluationError, Scope
    from orch.executors.pycompss import _yorc_properties

    values: dict[str, Any] = {}
    for name, value in node.properties.items():
        try:
            values[name] = evaluator.value(value, Scope(instance=instance_id))
        except EvaluationError:
            continue
    return _yorc_properties(values)


def _setting(props: dict[str, Any], site: Site | None, key: str, site_key: str | None = None
             ) -> Any:
    """The node's property when set (not empty), else the site's default (as executors do)."""
    value = props.get(key)
    if value not in (None, "", [], {}):
        return value
    return getattr(site, site_key or key, None) if site is not None else None


def _job(found: BlueprintNeeds, node: Node, kind: str, props: dict[str, Any], site: Site | None
         ) -> None:
    if site is None:
        found.notes.append(f"{node.name}: a job not hosted on a site of sites.yaml: not checked")
        return
    needs = found.site(site.name).needs
    name = node.name
    scheduler = site.scheduler
    needs.append(Need("scheduler", scheduler, name, SCHEDULER_WHY.get(scheduler, "is a batch job")))
    for command, why in SCHEDULER_COMMANDS.get(scheduler, {}).items():
        needs.append(Need("command", command, name, why))
    if scheduler in ACCOUNTING:
        command, why = ACCOUNTING[scheduler]
        needs.append(Need("command", command, name, why, optional=True))
    modules = tuple(str(m) for m in (_setting(props, site, "modules") or []) if str(m).strip())
    if modules:
        needs.append(Need("command", "module", name, "loads " + ", ".join(modules)))
        needs += [Need("module", m, name, "loaded before the job") for m in modules]
    if kind == "pycompss":
        needs.append(Need("command", "enqueue_compss", name, "launches the PyCOMPSs workflow",
                          after=modules))  # fmt: skip
        account = props.get("project") or site.account
        partition = site.partition
        image = props.get("container_image") or _image_target(node)
        if image:
            needs.append(Need("command", "apptainer", name, "runs the workflow in its image",
                              any_of=("apptainer", "singularity")))  # fmt: skip
    else:
        account = _setting(props, site, "account")
        partition = _setting(props, site, "partition")
        launcher = str(props.get("launcher") or "none")
        if launcher == "auto":  # as the scheduler's words read it
            launcher = "mpirun" if scheduler in ("sge", "pbs") else "srun"
        if launcher != "none" and not (launcher == "srun" and scheduler in ("sge", "pbs")):
            needs.append(Need("command", launcher, name, "starts the tasks",
                              after=modules if launcher == "mpirun" else ()))  # fmt: skip
        if "binds" in props or "nv" in props or "image" in props:  # as slurm_script.container
            needs.append(Need("command", "apptainer", name, "runs the command in its image"))
        if scheduler == "sge":
            _sge_job(needs, name, props, site, launcher)
    qos = _setting(props, site, "qos")
    flags = FLAGS[scheduler if kind == "slurm" and scheduler in ("sge", "pbs") else kind]
    if scheduler in ("sge", "pbs") and qos:
        needs.append(Need("unsupported", "qos", name, f"asks qos '{qos}'", value=str(qos)))
        qos = None
    for what, value in (("partition", partition), ("account", account), ("qos", qos)):
        if value:
            needs.append(Need(what, str(value), name, flags[what]))  # type: ignore[arg-type]


def _sge_job(needs: list[Need], name: str, props: dict[str, Any], site: Site, launcher: str
             ) -> None:  # fmt: skip
    """A batch job on an SGE site: its parallel environment when it asks for more than one
    slot (tasks x cpus_per_task), and what it asks that SGE cannot honour (SGE_REFUSES)."""
    slots = _count(props.get("tasks")) * _count(props.get("cpus_per_task"))
    if slots > 1:
        pe = str(_setting(props, site, "parallel_environment") or "mpi")
        needs.append(Need("parallel_environment", pe, name, f"runs {slots} slots"))
    asked = {"nodes": props.get("nodes") if _count(props.get("nodes")) > 1 else None,
             "tasks_per_node": props.get("tasks_per_node"),
             "launcher": "srun" if launcher == "srun" else None, "mpi": props.get("mpi")}
    for option, value in asked.items():
        if value not in (None, ""):
            needs.append(Need("unsupported", option, name, f"asks {option} '{value}'",
                              value=str(value)))  # fmt: skip


def _count(value: Any) -> int:
    """A count property as the executor reads it (1 when unset or not a number)."""
    try:
        return max(1, int(value)) if value is not None and not isinstance(value, bool) else 1
    except (TypeError, ValueError):
        return 1


def _image_target(node: Node) -> bool:
    """Whether the node's image requirement names a container image (built by the blueprint)."""
    return any(r.name == "image" for r in node.requirements)


def _image(found: BlueprintNeeds, model: Model, evaluator: Any, node: Node,
           props: dict[str, Any], site: Site | None) -> None:
    """The builder where the image is built: here (unless cached) or on the login node."""
    from orch.images.build import builders_needed
    from orch.images.spack import SpackError
    from orch.images.spec import ImageError, image_spec

    spack = _spack(model, evaluator, node)
    try:
        spec = image_spec(props, node.name, model.base_dir, spack,
                          site.container_runtime if site is not None else None)  # fmt: skip
    except (ImageError, SpackError) as exc:
        found.notes.append(f"{node.name}: the image cannot be worked out: {exc}")
        return
    builders = builders_needed(spec)
    if spec.build_on == "site" and site is not None:
        needs = found.site(site.name).needs
        modules = tuple(site.modules)
        if modules:  # images.site loads the site's modules before building
            needs.append(Need("command", "module", node.name, "loads " + ", ".join(modules)))
            needs += [Need("module", m, node.name, "loaded before the build") for m in modules]
        for builder in builders:
            needs.append(Need("command", builder, node.name, "builds the image (build_on: site)"))
        return
    cached = _cached(spec, model.base_dir)
    if cached:
        found.notes.append(f"{node.name}: {cached} is in orch's cache: not built again")
        return
    for builder in builders:
        found.local.append(Need("command", builder, node.name, "builds the image here "
                                "(build_on: local)"))  # fmt: skip


def _spack(model: Model, evaluator: Any, node: Node) -> dict[str, Any] | None:
    from orch.engine.evaluate import EvaluationError, Scope

    for requirement in node.requirements:
        if requirement.name == "spack_environment" and requirement.target in model.nodes:
            target = model.nodes[requirement.target]
            values = {}
            for name, value in target.properties.items():
                try:
                    values[name] = evaluator.value(value, Scope(instance=f"{target.name}/0"))
                except EvaluationError:
                    continue
            return values
    return None


def _cached(spec: Any, base_dir: str) -> str | None:
    """The image's file name when orch's cache has it already (then nothing is built)."""
    from orch.images.cache import cache_root, content_hash, image_file
    from orch.images.context import compose

    try:
        context = compose(spec, base_dir)
        file = image_file(spec, content_hash(spec, context))
    except Exception:  # the build itself reports why: here the cache is only a shortcut
        return None
    return file if (cache_root() / file).is_file() else None


# -- orch's own machine -------------------------------------------------------------------------


def missing_here(needs: list[Need]) -> dict[str, list[Need]]:
    """The commands orch's machine lacks (on orch's PATH), with the needs they fail."""
    missing: dict[str, list[Need]] = {}
    for need in needs:
        if not any(shutil.which(c) for c in need.commands):
            missing.setdefault(need.name, []).append(need)
    return missing

