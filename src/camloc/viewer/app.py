"""The viewer's web application (Starlette): the page, its static files and a small JSON API.

``GET /`` the page; ``GET /static/...`` its script and style; ``GET /api/info`` the model, its
class names, the methods, the colour map and the limits; ``GET /api/images`` the files of the
images folder; ``GET /api/image?path=`` one of them; ``POST /api/explain`` (multipart: an ``image``
file or a ``path`` in the images folder, and ``method``, ``topk``, ``classes``, ``threshold``) an
image's classes, scores, boxes and raw maps (:meth:`~camloc.viewer.inference.Explainer.explain`).

Every error is a JSON ``{"error": "one line"}`` with a status that says its kind (400 a bad
argument, 403 outside the images folder, 404 no such image, 413 over a size limit, 415 not an
image, 503 the queue is full); the server goes on serving. Request bodies over ``max_bytes`` are
refused from their ``Content-Length``, or cut off as they arrive; answers forbid content sniffing
and, by a Content-Security-Policy, any request to another origin.
"""

from __future__ import annotations

import base64
import io
import logging
import os
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders, UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import BadImage, InputTooLarge, InvalidArgument
from ..evaluation.explain import BOX_RULE
from ..maps.registry import METHOD_NAMES
from ..utils import camloc_version
from .files import BROWSER_FORMATS, confined, list_images, read_image
from .inference import MAX_TOPK, Explainer, QueueFull

__all__ = ["STATIC", "create_app"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")

_STATUS: list[tuple[type[BaseException], int]] = [
    (InvalidArgument, 400),
    (PermissionError, 403),
    (FileNotFoundError, 404),
    (InputTooLarge, 413),
    (BadImage, 415),
    (QueueFull, 503),
]
_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
}


def create_app(
    explainer: Explainer,
    *,
    images: str | os.PathLike | None = None,
    max_bytes: int = 20_000_000,
    max_pixels: int = 40_000_000,
    allowed_hosts: list[str] | None = None,
) -> Starlette:
    """The viewer's ASGI application.

    Args:
        explainer: the model, which answers one request at a time.
        images: a folder whose image files (and nothing else) the page may browse.
        max_bytes: the largest request body, hence upload, in bytes.
        max_pixels: the largest image, in pixels (checked from its header, before decoding).
        allowed_hosts: the ``Host`` headers answered (None: any); the loopback names when serving on
            loopback, so that another web site cannot reach the viewer through DNS rebinding.
    """
    root = Path(images).resolve() if images is not None else None

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def info(request: Request) -> Response:
        colours = matplotlib.colormaps["jet"](np.arange(256))[:, :3]
        return JSONResponse(
            {
                "model": explainer.info.name,
                "classes": list(explainer.info.class_names or []),
                "methods": list(METHOD_NAMES),
                "max_topk": MAX_TOPK,
                "resize": explainer.preprocess.mode,
                "box_rule": BOX_RULE,
                "threshold": explainer.info.paper_threshold,
                "colormap": np.round(colours * 255.0, 6).tolist(),
                "max_bytes": max_bytes,
                "max_pixels": max_pixels,
                "images": root is not None,
                "version": camloc_version(),
            }
        )

    async def folder(request: Request) -> Response:
        if root is None:
            raise FileNotFoundError("no images folder: start the server with --images DIR")
        return JSONResponse({"images": await run_in_threadpool(list_images, root)})

    async def image_file(request: Request) -> Response:
        name, data = await _folder_file(root, request.query_params.get("path", ""), max_bytes)
        image, kind = await run_in_threadpool(read_image, data, name, max_pixels)
        if kind in BROWSER_FORMATS:
            return Response(data, media_type=Image.MIME[kind])
        return Response(await run_in_threadpool(_encoded, image, "PNG"), media_type="image/png")

    async def explain(request: Request) -> Response:
        async with request.form(max_files=1, max_fields=8, max_part_size=4096) as form:
            options = _options(form.get("method"), form.get("topk"), form.get("classes"), form.get("threshold"))
            upload, path = form.get("image"), form.get("path")
            if isinstance(upload, UploadFile):
                name, data = Path(upload.filename or "upload").name[:200], await upload.read()
            elif isinstance(path, str) and path:
                name, data = await _folder_file(root, path, max_bytes)
            else:
                raise InvalidArgument("image", "send an image file (field image) or a path of the images folder (path)")
        image, kind = await run_in_threadpool(read_image, data, name, max_pixels)
        answer = await explainer.submit(image, **options)
        answer["image"] = {"name": name, "format": kind}
        if kind not in BROWSER_FORMATS:  # the page cannot show it as it is: send it as a JPEG
            jpeg = await run_in_threadpool(_encoded, image, "JPEG")
            answer["preview"] = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
        return JSONResponse(answer)

    handlers: dict[Any, Any] = {kind: _error_handler(status) for kind, status in _STATUS}
    handlers[HTTPException] = _http_error
    handlers[Exception] = _internal_error
    middleware = [Middleware(_Guard, max_bytes=max_bytes)]
    if allowed_hosts is not None:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts))
    return Starlette(
        routes=[
            Route("/", page),
            Route("/api/info", info),
            Route("/api/images", folder),
            Route("/api/image", image_file),
            Route("/api/explain", explain, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        middleware=middleware,
        exception_handlers=handlers,
    )


def _options(method: Any, topk: Any, classes: Any, threshold: Any) -> dict[str, Any]:
    """The explain options of a form's text fields (missing ones take their defaults)."""

    def number(value: Any, kind: type, field: str, default: Any) -> Any:
        if value in (None, ""):
            return default
        try:
            return kind(str(value))
        except ValueError:
            raise InvalidArgument(field, f"{field} must be a number, not {str(value)[:40]!r}") from None

    wanted = None
    if isinstance(classes, str) and classes.strip():
        wanted = [number(c.strip(), int, "classes", None) for c in classes.split(",")]
    return {
        "method": str(method or "cam"),
        "topk": number(topk, int, "topk", 5),
        "classes": wanted,
        "threshold": number(threshold, float, "threshold", None),
    }


async def _folder_file(root: Path | None, relative: str, max_bytes: int) -> tuple[str, bytes]:
    """``(name, bytes)`` of an image of the images folder."""
    if root is None:
        raise FileNotFoundError("no images folder: start the server with --images DIR")
    path = confined(root, relative)
    if path.stat().st_size > max_bytes:
        raise InputTooLarge(f"{relative}: {path.stat().st_size:,} bytes is over the limit of {max_bytes:,} bytes")
    return relative, await run_in_threadpool(path.read_bytes)


def _encoded(image: Image.Image, kind: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=kind, **({"quality": 90} if kind == "JPEG" else {}))
    return buffer.getvalue()


def _error_handler(status: int):
    async def handle(request: Request, err: Exception) -> Response:
        return JSONResponse({"error": " ".join(str(err).split())}, status_code=status)

    return handle


async def _http_error(request: Request, err: Exception) -> Response:
    assert isinstance(err, HTTPException)
    return JSONResponse({"error": str(err.detail)}, status_code=err.status_code, headers=err.headers)


async def _internal_error(request: Request, err: Exception) -> Response:
    log.error("%s %s failed", request.method, request.url.path, exc_info=err)
    return JSONResponse({"error": f"internal error ({type(err).__name__}); see the server's log"}, status_code=500)


class _Guard:
    """Refuses request bodies over ``max_bytes`` and adds the safety headers to every answer."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"the request is over the limit of {self.max_bytes:,} bytes"
        length = Headers(scope=scope).get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await JSONResponse({"error": too_large}, status_code=413, headers=_HEADERS)(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise InputTooLarge(too_large)
            return message

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in _HEADERS.items():
                    headers.setdefault(key, value)
            await send(message)

        await self.app(scope, limited, with_headers)
