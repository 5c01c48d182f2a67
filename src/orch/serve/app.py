"""The REST API of ``orch serve``, as eFlows4HPC's hpcwaas-api has it: list the published
workflows, trigger one, watch, cancel and read the logs of one's own executions, and make an
SSH key pair whose private key stays in orch's credential store."""

import asyncio
import re
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from orch import __version__
from orch.serve import inputs as request_inputs
from orch.serve.context import Service, user_dependency
from orch.serve.executions import Executions
from orch.serve.store import ACTIVE, FAILED, ServeStore

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
MAX_POLL = 600.0


class Workflow(BaseModel):
    id: str
    name: str
    application_id: str
    environment_id: str
    environment_name: str


class Workflows(BaseModel):
    workflows: list[Workflow]


class Trigger(BaseModel):
    inputs: dict[str, Any] = Field(default_factory=dict)


class ExecutionState(BaseModel):
    id: str
    status: str = Field(description="RUNNING, SUCCESS, FAILED, CANCELLING or CANCELLED")
    outputs: dict[str, Any]


class LogEntry(BaseModel):
    level: str
    timestamp: str
    content: str


class Logs(BaseModel):
    logs: list[LogEntry]
    total_results: int
    from_: int = Field(alias="from")


class KeyRequest(BaseModel):
    metadata: dict[str, Any] = Field(default_factory=dict)


class KeyPair(BaseModel):
    id: str
    public_key: str


LOGIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
SITE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def account_problems(metadata: dict[str, Any]) -> dict[str, str]:
    """What is wrong with a key's ``site`` and ``login`` (the account it logs into): a login
    name as sites accept them, a site name as sites.yaml has them."""
    problems = {}
    if "login" in metadata and "site" not in metadata:
        problems["site"] = "a key with a 'login' names its 'site' too"
    rules = (("site", SITE, "a site name of sites.yaml"),
             ("login", LOGIN, "a login name (letters, digits, _ . -)"))  # fmt: skip
    for name, pattern, what in rules:
        value = metadata.get(name)
        if value is not None and not (isinstance(value, str) and pattern.fullmatch(value)):
            problems[name] = f"{name} must be {what}"
    return problems


def parse_duration(text: str) -> float:
    """A Go duration as hpcwaas-api takes them (``1m``, ``30s``, ``1m30s``, ``500ms``)."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise HTTPException(400, f"invalid timeout {text!r} (e.g. 30s, 1m, 1m30s, 500ms)")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)


def create_app(state_dir: Path) -> FastAPI:
    state_dir = Path(state_dir).resolve()
    store = ServeStore(state_dir)
    service = Service(store, Executions(store, state_dir), state_dir)
    stop = threading.Event()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> Any:
        service.runner.refresh_all()  # what ended while no server watched
        watcher = threading.Thread(target=service.runner.watch, args=(stop,), daemon=True)
        watcher.start()
        yield
        stop.set()

    app = FastAPI(
        title="orch serve", version=__version__, lifespan=lifespan,
        description="HPC Workflows as a Service: the eFlows4HPC hpcwaas-api, on orch.",
    )  # fmt: skip
    from orch.serve.limits import LimitBody

    app.add_middleware(LimitBody)
    hpcwaas_routes(app, service)
    from orch.serve import browse, events, web

    browse.routes(app, service)
    events.routes(app, service)
    web.routes(app)
    return app


def hpcwaas_routes(app: FastAPI, service: Service) -> None:
    """The endpoints of eFlows4HPC's hpcwaas-api, with its paths, methods and JSON shapes."""
    store, runner = service.store, service.runner
    User = user_dependency(service)
    starting = threading.Lock()

    @app.get("/workflows", response_model=Workflows)
    def list_workflows(who: User) -> dict[str, Any]:
        return {"workflows": [
            {"id": p.name, "name": p.name, "application_id": p.deployment,
             "environment_id": p.deployment, "environment_name": p.deployment}
            for p in store.publications() if p.visible_to(who)
        ]}  # fmt: skip

    @app.post("/workflows/{workflow_name}", status_code=201, response_class=Response,
              responses={201: {"description": "Created; Location: /executions/<id>"}})  # fmt: skip
    def trigger(workflow_name: str, who: User, body: Trigger | None = None) -> Response:
        publication = store.publication(workflow_name)
        if publication is None or not publication.visible_to(who):
            raise HTTPException(404, f"no workflow '{workflow_name}'")
        given = body.inputs if body is not None else {}
        from orch.deployments import DeploymentError

        try:
            with service.orch_store() as orch:
                given, found, secret = request_inputs.check(
                    orch, publication.deployment, publication.workflow, given
                )
        except DeploymentError as exc:
            raise HTTPException(404, f"workflow '{workflow_name}': {exc}") from None
        if found:
            raise HTTPException(422, [
                {"loc": ["body", "inputs", name], "msg": message, "type": "value_error"}
                for name, messages in found.items() for message in messages
            ])  # fmt: skip
        with starting:  # one execution per deployment at a time: orch runs it locked
            busy = [
                e for e in store.executions(active=True, deployment=publication.deployment)
                if runner.refresh(e).status in ACTIVE
            ]  # fmt: skip
            if busy:
                raise HTTPException(
                    409, f"workflow '{workflow_name}' cannot start now: its deployment is busy "
                    "with another execution; try again when it has ended",
                )
            execution_id = runner.create(who, publication)
        try:
            runner.launch(execution_id, who, publication, given, secret)
        except OSError as exc:  # no process could start: the execution has failed
            store.finish(execution_id, FAILED, {})
            raise HTTPException(503, f"the execution could not start: {exc}") from None
        return Response(status_code=201, headers={"Location": f"/executions/{execution_id}"})

    @app.get("/executions/{execution_id}", response_model=ExecutionState)
    def execution(execution_id: str, who: User) -> dict[str, Any]:
        found = service.own_execution(execution_id, who)
        return {"id": found.id, "status": found.status, "outputs": found.outputs}

    @app.delete("/executions/{execution_id}", status_code=202, response_class=Response)
    def cancel(execution_id: str, who: User) -> Response:
        found = service.own_execution(execution_id, who)
        if found.status in ACTIVE and not found.cancel_requested:
            runner.cancel(found)
        return Response(status_code=202)

    @app.get("/executions/{execution_id}/logs", response_model=Logs, response_model_by_alias=True)
    async def logs(
        execution_id: str, who: User,
        from_: Annotated[int, Query(alias="from", ge=0)] = 0,
        timeout: str = "1m",
        size: int = -1,
        levels: Annotated[int, Query(ge=0, le=15)] = 0,
    ) -> dict[str, Any]:  # fmt: skip
        """Long polling: no thread waits, however many clients do."""
        wait = min(parse_duration(timeout), MAX_POLL)
        deadline = time.monotonic() + wait
        while True:
            found = await run_in_threadpool(service.own_execution, execution_id, who)
            entries = await run_in_threadpool(runner.logs, found, levels)
            if len(entries) > from_ or found.status not in ACTIVE:
                break
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.2)
        page = entries[from_:] if size < 0 else entries[from_ : from_ + size]
        return {"logs": page, "total_results": len(entries), "from": from_}

    @app.post("/ssh_keys", status_code=201, response_model=KeyPair)
    def ssh_key(who: User, body: KeyRequest | None = None) -> dict[str, str]:
        from orch.sites.credentials import CredentialStore

        metadata = {
            k: v for k, v in (body.metadata if body else {}).items()
            if k not in ("privateKey", "publicKey")
        }  # fmt: skip
        problems = account_problems(metadata)
        if problems:
            raise HTTPException(422, [
                {"loc": ["body", "metadata", name], "msg": message, "type": "value_error"}
                for name, message in problems.items()
            ])  # fmt: skip
        credential = CredentialStore.default().generate(f"orch serve {who}")
        store.add_ssh_key(credential.token, who, metadata)
        return {"id": credential.token, "public_key": credential.public_key}
