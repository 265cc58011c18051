"""``ailut serve``: a local web app to enhance photos and take home the image and its ``.cube``.

Python::

    from ailut_jax.serve import serve
    serve("models/fivek-srgb", host="127.0.0.1", port=7860)   # blocks until Ctrl-C

:mod:`ailut_jax.serve.engine` holds the model side (photos, strength, previews, downloads),
:mod:`ailut_jax.serve.app` the Starlette app over it, ``static/`` the page. Needs the
``serve`` extra (Starlette and uvicorn).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import uvicorn

from ailut_jax.enhance import Enhancer
from ailut_jax.serve.app import create_app
from ailut_jax.serve.engine import MAX_PIXELS, MAX_UPLOAD_BYTES, Engine

__all__ = ["Engine", "create_app", "serve"]


def serve(
    checkpoint: str | os.PathLike,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    impl: str = "auto",
    max_pixels: int = MAX_PIXELS,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    announce: Callable[[str], None] = print,
) -> None:
    """Load ``checkpoint``, compile the model, and serve the app until interrupted.

    The temporary folder of uploads and results is deleted when the server stops.
    """
    enhancer = Enhancer.from_checkpoint(checkpoint, impl=impl)
    engine = Engine(enhancer, max_pixels=max_pixels, max_upload_bytes=max_upload_bytes)
    try:
        announce(f"uploads and results go to {engine.root} (deleted when the server stops)")
        announce("compiling the model ...")
        engine.warm_up()
        loopback = host in ("127.0.0.1", "localhost")
        app = create_app(engine, allowed_hosts=["127.0.0.1", "localhost"] if loopback else None)
        shown = f"[{host}]" if ":" in host else host
        announce(f"ailut serve: open http://{shown}:{port}/ (Ctrl-C stops)")
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5
        )
        server = uvicorn.Server(config)
        server.run()
        if not server.started:
            raise OSError(f"could not listen on {host}:{port} (in use, or not an address here)")
    finally:
        engine.close()
