"""The web page of ``orch serve``: three static files of this package (no build step, nothing
from a CDN) that talk to the REST API with the token a scientist signs in with (kept in the
tab's sessionStorage, sent as a bearer token, never in a URL)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, RedirectResponse

FOLDER = Path(__file__).with_name("web")
FILES = {"index.html": "text/html", "app.js": "text/javascript", "app.css": "text/css"}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/ui/index.html")

    @app.get("/auth/login", include_in_schema=False)
    def login() -> RedirectResponse:
        """hpcwaas-api's sign-in page: here the page's own (tokens come from `orch tokens`)."""
        return RedirectResponse("/ui/index.html")

    @app.get("/ui/{name}", include_in_schema=False)
    def page(name: str) -> FileResponse:
        if name not in FILES:
            raise HTTPException(404, f"no page '{name}'")
        return FileResponse(FOLDER / name, media_type=FILES[name], headers=HEADERS)
