"""The web viewer: a local page that explains an image with any class and method, boxes redrawn live.

:func:`create_app` is the Starlette application; :class:`Explainer` holds the one model it serves;
:func:`serve` runs it with uvicorn. Needs the ``serve`` extra (``pip install 'camloc[serve]'``).
"""

from typing import TYPE_CHECKING

from ..utils import lazy_exports

_EXPORTS = {
    "Explainer": ".inference",
    "create_app": ".app",
    "require_server": ".server",
    "serve": ".server",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .app import create_app as create_app
    from .inference import Explainer as Explainer
    from .server import require_server as require_server
    from .server import serve as serve
