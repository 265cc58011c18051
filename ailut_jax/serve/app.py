"""The web face of ``ailut serve``: a Starlette app with one static page and a small JSON API.

Routes (``{id}`` is a photo; ``strength`` is 0-100, default 100):

- ``GET /``: the page (``static/index.html``, with ``app.js`` and ``style.css``).
- ``GET /api/config``: the limits and the model, for the page.
- ``POST /api/photos?name=NAME``: the raw file as the body; ``202 {"id": ...}``, or 4xx
  ``{"error": message}`` (empty, over the upload limit, not an image, too many pixels).
  Decoding and enhancing then run in the background, one photo at a time.
- ``GET /api/photos/{id}``: its state, progress, size, message and (once done) vertices.
- ``GET /api/photos/{id}/input.jpg`` and ``output.jpg?strength=``: previews.
- ``GET /api/photos/{id}/image.png?strength=&bits=8|16``: the full-size result.
- ``GET /api/photos/{id}/lut.cube?strength=&size=33|65``: the photo's LUT.
- ``GET /api/zip?ids=a,b&strength=&bits=&size=``: PNGs and ``.cube`` files of several.
- ``DELETE /api/photos/{id}``: forget a photo and delete its files.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
from pathlib import Path

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ailut_jax.serve.engine import BIT_DEPTHS, CUBE_SIZES, Engine, PhotoError

STATIC_DIR = Path(__file__).resolve().parent / "static"


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _int_param(request: Request, name: str, default: int, allowed) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number, got {text!r}") from None
    if value not in allowed:
        shown = f"{allowed.start}-{allowed.stop - 1}" if isinstance(allowed, range) else allowed
        raise BadRequest(f"{name} must be one of {shown}, got {value}")
    return value


def _strength(request: Request) -> int:
    return _int_param(request, "strength", 100, range(0, 101))


def _download_name(stem: str, suffix: str) -> dict:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem) or "photo"
    return {"Content-Disposition": f'attachment; filename="{safe}{suffix}"'}


def create_app(
    engine: Engine, *, close_engine: bool = True, allowed_hosts: list[str] | None = None
) -> Starlette:
    """The Starlette app serving ``engine``; closing the app (shutdown) closes the engine
    (deleting its temporary folder) unless ``close_engine`` is False.

    ``allowed_hosts``: the only ``Host`` headers answered (others get 400). A server on
    localhost passes its own names, so that a web page elsewhere cannot reach it by
    pointing a domain name at 127.0.0.1 (DNS rebinding).
    """
    worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="ailut")

    def photo_or_404(request: Request):
        photo = engine.get(request.path_params["photo_id"])
        if photo is None:
            raise BadRequest("no such photo (it may have been forgotten: upload it again)", 404)
        return photo

    async def index(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    async def config(request: Request) -> Response:
        model = engine.enhancer.config
        return JSONResponse({
            "max_pixels": engine.max_pixels,
            "max_upload_bytes": engine.max_upload_bytes,
            "cube_sizes": list(CUBE_SIZES),
            "bit_depths": list(BIT_DEPTHS),
            "n_vertices": model.n_vertices,
            "adaptive": model.en_adaint,
        })  # fmt: skip

    async def upload(request: Request) -> Response:
        limit = engine.max_upload_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return _error(f"the file is over the upload limit of {limit / 2**20:.0f} MB", 413)
        photo = engine.new_photo(request.query_params.get("name", "photo"))
        received = 0
        try:
            with open(photo.upload_path, "wb") as f:
                async for chunk in request.stream():
                    received += len(chunk)
                    if received > limit:
                        raise BadRequest(
                            f"the file is over the upload limit of {limit / 2**20:.0f} MB", 413
                        )
                    f.write(chunk)
            await run_in_threadpool(engine.admit, photo)
        except BadRequest as exc:
            engine.discard(photo)
            return _error(str(exc), exc.status)
        except PhotoError as exc:
            return _error(f"{photo.name}: {exc}", exc.status)
        except BaseException:
            engine.discard(photo)
            raise
        worker.submit(engine.process, photo)
        return JSONResponse(photo.status(), status_code=202)

    async def status(request: Request) -> Response:
        return JSONResponse(photo_or_404(request).status())

    async def delete(request: Request) -> Response:
        if not engine.remove(request.path_params["photo_id"]):
            return _error("no such photo", 404)
        return Response(status_code=204)

    async def input_preview(request: Request) -> Response:
        photo = photo_or_404(request)
        data = await run_in_threadpool(engine.preview, photo, None)
        return Response(data, media_type="image/jpeg")

    async def output_preview(request: Request) -> Response:
        photo, strength = photo_or_404(request), _strength(request)
        data = await run_in_threadpool(engine.preview, photo, strength)
        return Response(data, media_type="image/jpeg")

    async def image(request: Request) -> Response:
        photo, strength = photo_or_404(request), _strength(request)
        bits = _int_param(request, "bits", 8, BIT_DEPTHS)
        data = await run_in_threadpool(engine.png, photo, strength, bits)
        headers = _download_name(photo.stem, f"_ailut{strength}_{bits}bit.png")
        return Response(data, media_type="image/png", headers=headers)

    async def cube(request: Request) -> Response:
        photo, strength = photo_or_404(request), _strength(request)
        size = _int_param(request, "size", CUBE_SIZES[0], CUBE_SIZES)
        text = await run_in_threadpool(engine.cube, photo, strength, size)
        headers = _download_name(photo.stem, f"_ailut{strength}_{size}.cube")
        return Response(text, media_type="text/plain; charset=utf-8", headers=headers)

    async def zip_all(request: Request) -> Response:
        ids = [i for i in request.query_params.get("ids", "").split(",") if i]
        if not ids:
            raise BadRequest("ids: name at least one photo")
        photos = []
        for photo_id in ids:
            photo = engine.get(photo_id)
            if photo is None:
                raise BadRequest(f"no such photo {photo_id!r}", 404)
            photos.append(photo)
        strength = _strength(request)
        bits = _int_param(request, "bits", 8, BIT_DEPTHS)
        size = _int_param(request, "size", CUBE_SIZES[0], CUBE_SIZES)
        path = await run_in_threadpool(engine.zip_to, photos, strength, bits, size)
        return FileResponse(
            path,
            media_type="application/zip",
            filename=f"ailut_{len(photos)}_photos_{strength}.zip",
            background=BackgroundTask(path.unlink, missing_ok=True),
        )

    async def bad_request(request: Request, exc: BadRequest) -> Response:
        return _error(str(exc), exc.status)

    async def photo_error(request: Request, exc: PhotoError) -> Response:
        return _error(str(exc), exc.status)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        worker.shutdown(wait=True, cancel_futures=True)
        if close_engine:
            engine.close()

    photo = "/api/photos/{photo_id:str}"
    routes = [
        Route("/", index),
        Route("/api/config", config),
        Route("/api/photos", upload, methods=["POST"]),
        Route(photo, status),
        Route(photo, delete, methods=["DELETE"]),
        Route(photo + "/input.jpg", input_preview),
        Route(photo + "/output.jpg", output_preview),
        Route(photo + "/image.png", image),
        Route(photo + "/lut.cube", cube),
        Route("/api/zip", zip_all),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    middleware = []
    if allowed_hosts is not None:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={BadRequest: bad_request, PhotoError: photo_error},
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.worker = worker
    return app
