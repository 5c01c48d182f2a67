"""What every route of ``orch serve`` shares: the server's records, its executions, orch's
state folder, and who is asking (a bearer token's user)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from orch.serve.executions import Executions
from orch.serve.store import Execution, ServeStore

_bearer = HTTPBearer(auto_error=False, description="A token of `orch tokens create USER`.")


@dataclass
class Service:
    store: ServeStore
    runner: Executions
    state_dir: Path

    def user(
        self, credentials: HTTPAuthorizationCredentials | None
    ) -> str:
        """The user of the request's bearer token, else 401."""
        name = self.store.user_of(credentials.credentials) if credentials is not None else None
        if name is None:
            raise HTTPException(
                401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
            )
        return name

    def own_execution(self, execution_id: str, who: str) -> Execution:
        """``who``'s execution as it is now; anyone else's is 404, as an unknown one."""
        execution = self.store.execution(execution_id)
        if execution is None or execution.user != who:
            raise HTTPException(404, f"no execution '{execution_id}'")
        return self.runner.refresh(execution)

    @contextmanager
    def orch_store(self) -> Iterator[Any]:
        """orch's own state store (read only here), else 503."""
        from orch.state import StateError, Store

        try:
            opened = Store.open(self.state_dir, create=False)
        except StateError as exc:
            raise HTTPException(503, f"orch's state cannot be read: {exc}") from None
        try:
            yield opened
        finally:
            opened.close()


def user_dependency(service: Service) -> Any:
    """``Annotated[str, Depends(...)]``: the requesting user, for route signatures."""

    def user(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> str:
        return service.user(credentials)

    return Annotated[str, Depends(user)]
