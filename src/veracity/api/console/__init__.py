"""The reviewer console at /console: a static page, its script and its style, served by the
service itself.

The console is a client of the public JSON API and nothing more: it signs in with an API key
kept in the tab's session storage, sends it as ``X-API-Key`` like any client, and draws what
the API answers. So it needs no server-side session, no template and no route of its own
beyond these files, and whatever a reviewer does there a script can do too. The files are
package data (no CDN, no build step, no request to any other host): an air-gapped laptop
serves the whole of it.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from starlette.staticfiles import StaticFiles

CONSOLE_PATH = "/console"
ASSETS_PATH = "/console/assets"

# The page may load only its own script, style and images, talk only to this origin, and
# never be framed. No inline script or style is allowed at all: every value the API returns
# (a file name, a reviewer's note, model metadata) is set as text, never as markup, and a
# value that slipped into the page as markup still could not run.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "form-action 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)


def static_dir() -> str:
    return str(resources.files(__name__) / "static")


def install_console(app: FastAPI) -> None:
    """Serve the console's page at ``/console`` and its files under ``/console/assets``."""
    directory = static_dir()
    index = f"{directory}/index.html"
    headers = {"content-security-policy": CONTENT_SECURITY_POLICY}
    app.mount(ASSETS_PATH, StaticFiles(directory=directory), name="console-assets")

    @app.get(CONSOLE_PATH, include_in_schema=False)
    async def console_page() -> FileResponse:
        return FileResponse(index, media_type="text/html", headers=headers)

    @app.get(CONSOLE_PATH + "/", include_in_schema=False)
    async def console_slash() -> RedirectResponse:
        return RedirectResponse(CONSOLE_PATH, status_code=308)
