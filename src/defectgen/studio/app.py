"""The studio's web layer: a Starlette app over a `StudioSession`.

Every request must carry the session's token (`?token=` in the page URL and image links, the
`X-Studio-Token` header on API calls); anything else is answered 403. The page is one HTML
file with its CSS and JavaScript inlined at start-up from the package's `static/` folder, so
nothing is fetched from outside and no build step exists. Generation runs in the session's
worker thread; the page polls `/api/jobs/ID` for progress.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from importlib import resources

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from defectgen.fileio import parse_json
from defectgen.studio.session import MAX_UPLOAD_BYTES, StudioError, StudioSession, mask_from_png

MAX_JSON_BYTES = 40_000_000  # a generate request carries the mask as a PNG data URL
TOKEN_HEADER = "X-Studio-Token"
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; img-src 'self' data: blob:; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; connect-src 'self'; form-action 'none'; frame-ancestors 'none'",
}


def page_html() -> str:
    """index.html with studio.css and studio.js inlined."""
    folder = resources.files("defectgen.studio") / "static"
    html = (folder / "index.html").read_text(encoding="utf-8")
    html = html.replace("/*STUDIO_CSS*/", (folder / "studio.css").read_text(encoding="utf-8"))
    return html.replace("/*STUDIO_JS*/", (folder / "studio.js").read_text(encoding="utf-8"))


def create_app(session: StudioSession, token: str, allowed_hosts: list[str] | None = None) -> Starlette:
    """The studio's routes behind the token check; with `allowed_hosts`, requests whose Host
    header names another host are refused (a page of another site rebinding its name to this
    address cannot reach the studio)."""
    page = page_html()

    def authorised(request: Request) -> bool:
        given = request.headers.get(TOKEN_HEADER) or request.query_params.get("token") or ""
        return hmac.compare_digest(given.encode(), token.encode())

    def endpoint(handler):
        """Token check, StudioError -> JSON error with its status, security headers."""

        async def wrapped(request: Request) -> Response:
            if not authorised(request):
                return _error("missing or wrong token: open the URL `defectgen studio` printed", 403)
            try:
                response = await handler(request)
            except StudioError as err:
                response = _error(str(err), err.status)
            response.headers.update(SECURITY_HEADERS)
            return response

        return wrapped

    async def index(request: Request) -> Response:
        return HTMLResponse(page)

    async def info(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(session.info))

    async def background(request: Request) -> Response:
        image = await run_in_threadpool(session.background, request.query_params.get("id", ""))
        return Response(await run_in_threadpool(_png, image), media_type="image/png")

    async def upload(request: Request) -> Response:
        data = await _body(request, MAX_UPLOAD_BYTES)
        return JSONResponse(await run_in_threadpool(session.upload, data))

    async def shape(request: Request) -> Response:
        query = request.query_params
        class_id, seed = _int(query.get("class_id")), _int(query.get("seed", "0"))
        mask = await run_in_threadpool(session.real_shape, query.get("background", ""), class_id, seed)
        return Response(await run_in_threadpool(_png, (mask * 255).astype(np.uint8)), media_type="image/png")

    async def generate(request: Request) -> Response:
        body = await _json(request)
        key = str(body.get("background", ""))
        image = await run_in_threadpool(session.background, key)
        mask = await run_in_threadpool(mask_from_png, _data_url(body.get("mask")), image.shape[:2])
        class_id, seed, draws = (
            _int(body.get(k, d)) for k, d in (("class_id", None), ("seed", 0), ("draws", 1))
        )
        severity = body.get("severity")
        severity = None if severity is None else _number(severity)
        job = await run_in_threadpool(session.start, key, mask, class_id, seed, draws, severity)
        return JSONResponse({"job": job})

    async def job(request: Request) -> Response:
        job = session.job(request.path_params["job"])
        since = max(0, _int(request.query_params.get("since", "0")))
        pictures = list(job.pictures)  # PNG data URLs, encoded once by the worker
        results = [
            {"draw": i, "seed": job.seeds[i], "image": pictures[i], "kept": job.kept.get(i)}
            for i in range(since, len(pictures))
        ]
        state = {"done": len(pictures), "total": len(job.seeds), "finished": job.finished, "error": job.error}
        return JSONResponse({**state, "results": results})

    async def keep(request: Request) -> Response:
        body = await _json(request)
        record = await run_in_threadpool(session.keep, str(body.get("job", "")), _int(body.get("draw")))
        return JSONResponse(record)

    routes = [
        Route("/", endpoint(index)),
        Route("/api/info", endpoint(info)),
        Route("/api/background", endpoint(background)),
        Route("/api/upload", endpoint(upload), methods=["POST"]),
        Route("/api/shape", endpoint(shape)),
        Route("/api/generate", endpoint(generate), methods=["POST"]),
        Route("/api/jobs/{job}", endpoint(job)),
        Route("/api/keep", endpoint(keep), methods=["POST"]),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)] if allowed_hosts else []
    return Starlette(routes=routes, middleware=middleware)


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=SECURITY_HEADERS)


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) past `limit` bytes before it is all read."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise StudioError(f"the request is larger than {limit // 1_000_000} MB", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise StudioError(f"the request is larger than {limit // 1_000_000} MB", 413)
        chunks.append(chunk)
    return b"".join(chunks)


async def _json(request: Request) -> dict:
    try:
        body = parse_json(await _body(request, MAX_JSON_BYTES))
    except (ValueError, UnicodeDecodeError):
        raise StudioError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise StudioError("the request body must be a JSON object")
    return body


def _int(value) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise StudioError(f"expected an integer, got {value!r}")  # never 1.9 -> 1
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise StudioError(f"expected an integer, got {str(value)[:40]!r}") from None


def _number(value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise StudioError(f"expected a number, got {str(value)[:40]!r}")
    try:
        return float(value)
    except (ValueError, OverflowError):
        raise StudioError(f"expected a number, got {str(value)[:40]!r}") from None


def _data_url(value) -> bytes:
    """The bytes of a `data:image/png;base64,...` URL."""
    prefix = "data:image/png;base64,"
    if not isinstance(value, str) or not value.startswith(prefix):
        raise StudioError("the mask must be sent as a data:image/png;base64 URL")
    try:
        return base64.b64decode(value[len(prefix) :], validate=True)
    except (binascii.Error, ValueError):
        raise StudioError("the mask's base64 is malformed") from None


def _png(pixels: np.ndarray) -> bytes:
    from defectgen.synthset.writer import png_bytes

    return png_bytes(pixels)
