"""What orch serve offers beyond hpcwaas-api, for the web page and scripts: a workflow's input
definitions (to build its form), a user's executions page by page, and their SSH keys."""


import contextlib
import json
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Response
from pydantic import BaseModel, Field

from orch.serve.context import Service, user_dependency

MAX_PAGE = 200


class InputDefinition(BaseModel):
    name: str
    type: str
    required: bool
    description: str = ""
    default: Any = None
    constraints: list[dict[str, Any]] = Field(default_factory=list)
    secret: bool = False
    """A secret's default is never shown; the page asks for it as a password."""


class WorkflowDetail(BaseModel):
    id: str
    name: str
    application_id: str
    workflow: str
    description: str = ""
    inputs: list[InputDefinition]


class ExecutionSummary(BaseModel):
    id: str
    workflow: str
    status: str
    created: str
    ended: str | None
    cancel_requested: bool


class ExecutionPage(BaseModel):
    executions: list[ExecutionSummary]
    total_results: int
    from_: int = Field(alias="from")


class SshKeyInfo(BaseModel):
    id: str
    metadata: dict[str, Any]
    created: str


class SshKeys(BaseModel):
    ssh_keys: list[SshKeyInfo]


def stamp(when: float | None) -> str | None:
    """An ISO 8601 UTC time, as the logs give theirs."""
    if when is None:
        return None
    text = datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def _plain(value: Any) -> Any:
    """A blueprint's value as JSON has it (YAML scalars of orch's loader are str/int/...)."""
    return json.loads(json.dumps(value, default=str))


def input_definitions(definitions: dict[str, Any], secrets: set[str]) -> list[dict[str, Any]]:
    """TOSCA parameter definitions as the form needs them, in the blueprint's order."""
    shown = []
    for name, definition in definitions.items():
        spec = definition if isinstance(definition, dict) else {}
        has_default = "default" in spec
        constraints = spec.get("constraints") or []
        shown.append({
            "name": name,
            "type": str(spec.get("type", "string")),
            "required": spec.get("required", True) is not False and not has_default,
            "description": str(spec.get("description") or ""),
            "default": None if name in secrets or not has_default else _plain(spec["default"]),
            "constraints": [_plain(c) for c in constraints if isinstance(c, dict)],
            "secret": name in secrets,
        })  # fmt: skip
    return shown


def routes(app: FastAPI, service: Service) -> None:
    store, runner = service.store, service.runner
    User = user_dependency(service)

    @app.get("/user")
    def whoami(who: User) -> dict[str, str]:
        """The user the token belongs to."""
        return {"name": who}

    @app.get("/workflows/{workflow_name}", response_model=WorkflowDetail)
    def workflow(workflow_name: str, who: User) -> dict[str, Any]:
        """A published workflow and its input definitions (types, defaults, descriptions,
        constraints)."""
        publication = store.publication(workflow_name)
        if publication is None or not publication.visible_to(who):
            raise HTTPException(404, f"no workflow '{workflow_name}'")
        from orch.deployments import DeploymentError
        from orch.serve.inputs import definitions_for

        try:
            with service.orch_store() as orch:
                own, _deployment, secrets, description = definitions_for(
                    orch, publication.deployment, publication.workflow
                )
        except DeploymentError as exc:
            raise HTTPException(404, f"workflow '{workflow_name}': {exc}") from None
        return {
            "id": publication.name, "name": publication.name,
            "application_id": publication.deployment, "workflow": publication.workflow,
            "description": description, "inputs": input_definitions(own, secrets),
        }  # fmt: skip

    @app.get("/executions", response_model=ExecutionPage, response_model_by_alias=True)
    def executions(
        who: User,
        from_: Annotated[int, Query(alias="from", ge=0)] = 0,
        size: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    ) -> dict[str, Any]:
        """The user's executions, newest first, ``size`` from ``from``."""
        page, total = store.executions_of(who, from_, size)
        now = [runner.refresh(e) for e in page]
        return {"executions": [
            {"id": e.id, "workflow": e.publication, "status": e.status,
             "created": stamp(e.created), "ended": stamp(e.ended),
             "cancel_requested": e.cancel_requested}
            for e in now
        ], "total_results": total, "from": from_}  # fmt: skip

    @app.get("/ssh_keys", response_model=SshKeys)
    def ssh_keys(who: User) -> dict[str, Any]:
        """The user's keys (ids and metadata; a public key is shown only when it is made)."""
        return {"ssh_keys": [
            {"id": k.id, "metadata": k.metadata, "created": stamp(k.created)}
            for k in store.ssh_keys(who)
        ]}  # fmt: skip

    @app.delete("/ssh_keys/{key_id}", status_code=204, response_class=Response)
    def forget_key(key_id: str, who: User) -> Response:
        """Delete the user's key from orch's credential store; anyone else's is 404."""
        if not store.remove_ssh_key(key_id, who):
            raise HTTPException(404, f"no SSH key '{key_id}'")
        from orch.sites.credentials import CredentialError, CredentialStore

        with contextlib.suppress(CredentialError):  # already gone from the store
            CredentialStore.default().remove(key_id)
        return Response(status_code=204)
