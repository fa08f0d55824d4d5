"""Swagger UI at /docs, with its JavaScript and CSS served by the app itself.

FastAPI's default page loads Swagger UI from a public CDN: that fails on an offline network,
leaks every visit of the docs to a third party, and runs whatever script the CDN serves
with access to the keys typed into the page. The assets come from the pinned
``fastapi-swagger`` package (a maintained copy of the Swagger UI distribution) instead.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

ASSETS_PATH = "/docs/assets"


def install_docs(app: FastAPI, *, openapi_url: str, docs_url: str = "/docs") -> None:
    """Serve Swagger UI for ``openapi_url`` at ``docs_url`` from local assets."""
    assets = resources.files("fastapi_swagger") / "resources"
    app.mount(ASSETS_PATH, StaticFiles(directory=str(assets)), name="swagger-assets")

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon-32x32.png",
        )
