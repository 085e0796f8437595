"""``camloc serve``: a local web page to explain an image with any class and method, boxes redrawn live."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_map_size_arg, add_model_args, load_model_and_info, map_size_of, positive

__all__ = ["register", "run"]


def register(p: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: %(default)s; 0: any free port)")
    p.add_argument("--images", metavar="DIR", help="a folder whose images the page can browse (nothing else is read)")
    p.add_argument(
        "--max-bytes", type=positive, default=20_000_000, metavar="N", help="largest upload (default: %(default)s)"
    )
    p.add_argument(
        "--max-pixels",
        type=positive,
        default=40_000_000,
        metavar="N",
        help="largest image in pixels, checked before decoding (default: %(default)s)",
    )
    p.add_argument(
        "--queue", type=positive, default=64, metavar="N", help="requests waiting for the model (default: %(default)s)"
    )
    add_model_args(p, methods=False, resize_default="full")
    add_map_size_arg(p)
    p.add_argument("--target-layer", metavar="NAME", help="layer the methods but cam explain (default: the last)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Load the model, then serve the page until interrupted."""
    from ..viewer.server import LOOPBACK_NAMES, is_loopback, listen, require_server

    require_server()
    if args.images and not Path(args.images).is_dir():
        raise FileNotFoundError(f"{args.images}: no such folder (--images)")
    from ..viewer import Explainer, create_app, serve

    model, info = load_model_and_info(args)
    map_size = map_size_of(args, info)
    explainer = Explainer(model, info, target_layer=args.target_layer, queue=args.queue, map_size=map_size)
    explainer.method("cam")  # made now: the first request does not pay for it
    loopback = is_loopback(args.host)
    app = create_app(
        explainer,
        images=args.images,
        max_bytes=args.max_bytes,
        max_pixels=args.max_pixels,
        allowed_hosts=LOOPBACK_NAMES if loopback else None,
    )
    sock = listen(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"camloc: serving {info.name} on http://{shown}:{port}/ (Ctrl-C to stop)", flush=True)
    if not loopback:
        print(
            f"camloc: warning: listening on {args.host}: anyone who can reach this machine can use the viewer",
            file=sys.stderr,
        )
    try:
        serve(app, sock)
    finally:
        explainer.close()
    return 0
