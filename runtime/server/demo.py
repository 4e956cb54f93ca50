"""The browser demo: a page at `/` that holds a voice conversation with this server (`static/`, no build step).

The page and its files are public, as any page is; the websocket it opens is guarded as every client's
(`access.py`): the page's own origin passes the default policy (a loopback origin on a loopback server,
else the server's own), and on a server with keys the page's key field sends the key in the browser
subprotocol. Behind a reverse proxy, `--allowed-origins` lists the site, as for any page.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent / "static"
# The page loads only its own files and talks only to its own server ('self' covers ws: and wss: there).
POLICY = (
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def install_demo(app: web.Application) -> None:
    """Serve the page at `/` and its files under `/static/`."""
    app.router.add_get("/", page)
    app.router.add_static("/static/", STATIC)


async def page(request: web.Request) -> web.FileResponse:
    """`GET /`: the demo page, under a content security policy that keeps it to its own origin."""
    return web.FileResponse(
        STATIC / "index.html", headers={"Content-Security-Policy": POLICY, "X-Content-Type-Options": "nosniff"}
    )
