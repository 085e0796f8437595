"""What the viewer reads: uploads checked by content and size, and files confined to one folder.

An upload's format is what its bytes say (PIL's decoders for the formats of :data:`FORMATS` only;
never the name or the declared type); its pixel count is read from the header and checked before
anything is decoded. Files of ``--images DIR`` are named by a path relative to that folder that
must resolve, symlinks followed, to an image file inside it.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from ..images import open_image
from ..utils import is_image_file

__all__ = ["BROWSER_FORMATS", "FORMATS", "confined", "list_images", "read_image"]

#: PIL formats the viewer decodes (JPEG's also opens a phone's multi-picture JPEG, format MPO), and
#: those a browser shows as they are.
FORMATS = frozenset({"JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "PPM"})
BROWSER_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP"})


def read_image(data: bytes, name: str, max_pixels: int) -> tuple[Image.Image, str]:
    """``(upright RGB image, its PIL format)`` of a file's bytes, checked.

    Raises:
        BadImage: the content is in none of :data:`FORMATS`, or is broken (the message names ``name``).
        InputTooLarge: the image has more than ``max_pixels`` pixels.
    """
    source = _Named(data, name)
    image = open_image(source, max_pixels=max_pixels, formats=FORMATS)
    source.seek(0)
    with Image.open(source, formats=sorted(FORMATS)) as im:  # the header again: the format just decoded
        return image, str(im.format)


class _Named(io.BytesIO):
    """Bytes in memory with a file name, which :func:`~camloc.images.open_image` names in its errors."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.name = name


def confined(root: Path, relative: str) -> Path:
    """The image file ``relative`` names under the folder ``root`` (resolved).

    Raises:
        PermissionError: the path leads outside ``root`` (``..``, an absolute path, a symlink out).
        FileNotFoundError: there is no image file there.
    """
    if not relative or "\x00" in relative:
        raise FileNotFoundError(f"{relative!r}: no such image in the images folder")
    target = (root / relative).resolve()
    if not target.is_relative_to(root):
        raise PermissionError(f"{relative}: outside the images folder")
    if not target.is_file() or not is_image_file(target):
        raise FileNotFoundError(f"{relative}: no such image in the images folder")
    return target


def list_images(root: Path, limit: int = 10_000) -> list[str]:
    """The image files under ``root`` (resolved) that stay inside it, as sorted relative paths; at most ``limit``."""
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and is_image_file(path) and path.resolve().is_relative_to(root):
            found.append(path.relative_to(root).as_posix())
            if len(found) == limit:
                break
    return found
