"""Images in, normalized batches out, with the geometry that maps model pixels back to the file."""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, fields, replace
from typing import Any, BinaryIO, Literal

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from .errors import BadImage, InputTooLarge, InvalidArgument
from .utils import readable

__all__ = ["BadImage", "Batch", "Geometry", "Preprocess", "crop_to_box", "load_batch", "open_image", "to_rgb"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ResizeMode = Literal["crop", "squash", "full"]
RESIZE_MODES = ("crop", "squash", "full")


def open_image(
    path: str | os.PathLike | BinaryIO, *, max_pixels: int | None = None, formats: Collection[str] | None = None
) -> Image.Image:
    """Open any PIL-readable file as an upright 8-bit RGB image.

    EXIF orientation is applied; transparency is composited on white; 16-bit and float grayscale
    are scaled to 8 bits by their type's range rather than clipped.

    Args:
        path: a file, a :class:`~camloc.utils.TarMember` (read from its archive), or an open binary file
            (named in errors by its ``name`` attribute).
        max_pixels: refuse, with :class:`~camloc.errors.InputTooLarge`, an image of more pixels: its
            header is read first, so a decompression bomb is never decoded.
        formats: the PIL formats to try (``{"JPEG", "PNG"}``); the content decides, not the name.
    """
    name = path if isinstance(path, (str, os.PathLike)) else str(getattr(path, "name", "<file>"))
    try:
        source = readable(path) if isinstance(path, (str, os.PathLike)) else path
        with Image.open(source, formats=None if formats is None else sorted(formats)) as im:
            if max_pixels is not None and im.width * im.height > max_pixels:
                raise InputTooLarge(f"{name}: {im.width}x{im.height} pixels is over the limit of {max_pixels:,} pixels")
            im.load()
            return to_rgb(ImageOps.exif_transpose(im))
    except FileNotFoundError:
        raise BadImage(name, "no such file") from None
    except IsADirectoryError:
        raise BadImage(name, "is a directory") from None
    except UnidentifiedImageError:
        known = f" ({', '.join(sorted(formats))})" if formats else ""
        raise BadImage(name, f"not a readable image: its content is in no image format PIL reads{known}") from None
    except Image.DecompressionBombError as err:
        raise InputTooLarge(f"{name}: over PIL's limit against decompression bombs ({err})") from None
    except InputTooLarge:
        raise
    except Exception as err:  # noqa: BLE001 - PIL raises many types for broken files
        raise BadImage(name, f"not a readable image ({type(err).__name__}: {err})") from None


def to_rgb(im: Image.Image) -> Image.Image:
    """``im`` as an 8-bit RGB image (``im`` itself when it is RGB already).

    Grayscale of more than 8 bits is scaled by its type's range, then rounded and clipped: the
    16-bit modes by 65535, ``I`` by 255 unless a value exceeds it (then by 65535), ``F`` by 1 when
    its values are at most 1, else by 255. Transparency (an alpha band, or a palette's transparent
    colour) is composited on white; any other mode is converted by PIL.
    """
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        if im.mode == "F":
            top = 1.0 if a.max() <= 1.0 else 255.0
        gray = np.clip(np.round(a / top * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


@dataclass(frozen=True)
class Geometry:
    """Where the model's input lies in the original image.

    The original image (width x height) is resized to (resized_width x resized_height) and the
    model sees the ``input_width`` x ``input_height`` window at (left, top) of it: a ``size`` x
    ``size`` square for ``squash`` (all of it) and ``crop`` (a centred window), all of the resized
    image for ``full``. Coordinates are continuous, in pixel edges.
    """

    width: int
    height: int
    size: int
    resized_width: int
    resized_height: int
    left: int
    top: int
    full: bool = False  # the window is the whole resized image, of any aspect

    @property
    def input_width(self) -> int:
        """Width of the model's input in pixels."""
        return self.resized_width if self.full else self.size

    @property
    def input_height(self) -> int:
        """Height of the model's input in pixels."""
        return self.resized_height if self.full else self.size

    @property
    def covers_image(self) -> bool:
        """Whether the model sees all of the original image."""
        return self.full or (
            self.left == 0 and self.top == 0 and self.resized_width == self.resized_height == self.size
        )

    @property
    def scale_x(self) -> float:
        """Original pixels per resized pixel."""
        return self.width / self.resized_width

    @property
    def scale_y(self) -> float:
        """Original pixels per resized pixel, vertically."""
        return self.height / self.resized_height

    def box_to_original(self, box: Sequence[int]) -> tuple[int, int, int, int]:
        """An inclusive input-frame pixel box (x0, y0, x1, y1) to the original image's pixels.

        The result covers every original pixel that overlaps the box; integer arithmetic keeps
        edges that land exactly on an original pixel edge exact.
        """
        x0, y0, x1, y1 = (int(v) for v in box)
        w, h, rw, rh = self.width, self.height, self.resized_width, self.resized_height
        ox0 = (x0 + self.left) * w // rw
        oy0 = (y0 + self.top) * h // rh
        ox1 = -(-(x1 + 1 + self.left) * w // rw) - 1  # ceil division
        oy1 = -(-(y1 + 1 + self.top) * h // rh) - 1
        return max(0, ox0), max(0, oy0), min(w - 1, ox1), min(h - 1, oy1)


@dataclass(frozen=True)
class Preprocess:
    """Resize + normalize: torchvision's eval (``crop``), the WSOL protocol (``squash``) or the whole photo (``full``).

    ``full`` resizes the shorter side to ``resize_size`` (the scale ``crop`` works at) and keeps
    the whole image, at its own aspect: the maps cover the photo, and images of different shapes
    cannot share a batch.
    """

    size: int = 224
    resize_size: int = 256  # shorter side before the centre crop (``crop``), or of the whole input (``full``)
    mode: ResizeMode = "crop"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    _resample: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        if self.mode not in RESIZE_MODES:
            raise InvalidArgument("mode", f"resize mode must be one of {', '.join(RESIZE_MODES)}, not {self.mode!r}")
        names = {
            "bilinear": Image.Resampling.BILINEAR,
            "bicubic": Image.Resampling.BICUBIC,
            "nearest": Image.Resampling.NEAREST,
        }
        if self.interpolation not in names:
            raise InvalidArgument(
                "interpolation", f"interpolation must be one of {sorted(names)}, not {self.interpolation!r}"
            )
        object.__setattr__(self, "_resample", names[self.interpolation])

    def geometry(self, width: int, height: int) -> Geometry:
        """Where the model's input lies in an image of ``width`` x ``height`` pixels.

        ``squash``: the whole image resized to ``size`` x ``size``. ``crop``: the shorter side resized
        to ``resize_size`` (the longer one truncated, as torchvision's ``Resize(int)``), then the centred
        ``size`` x ``size`` window (torchvision's ``CenterCrop`` offsets). ``full``: the shorter side
        resized to ``resize_size`` likewise, nothing cut.
        """
        s = self.size
        if self.mode == "squash":
            return Geometry(width, height, s, s, s, 0, 0)
        # torchvision's Resize(int): shorter side to resize_size, longer side truncated.
        if width <= height:
            rw, rh = self.resize_size, int(self.resize_size * height / width)
        else:
            rw, rh = int(self.resize_size * width / height), self.resize_size
        if self.mode == "full":
            return Geometry(width, height, s, rw, rh, 0, 0, full=True)
        # torchvision's CenterCrop offsets.
        return Geometry(width, height, s, rw, rh, int(round((rw - s) / 2.0)), int(round((rh - s) / 2.0)))

    def resize(self, im: Image.Image) -> tuple[Image.Image, Geometry]:
        """``im`` resized (and, in ``crop`` mode, centre-cropped) as the model sees it, with its geometry."""
        geo = self.geometry(*im.size)
        if self.mode == "squash":
            return im.resize((self.size, self.size), self._resample), geo
        resized = im.resize((geo.resized_width, geo.resized_height), self._resample)
        if self.mode == "full":
            return resized, geo
        window = (geo.left, geo.top, geo.left + self.size, geo.top + self.size)
        return resized.crop(window), geo

    def to_tensor(self, im: Image.Image) -> Tensor:
        """An 8-bit RGB image to a normalized (3, H, W) float tensor."""
        x = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return x.sub_(mean).div_(std)

    def with_mode(self, mode: ResizeMode) -> Preprocess:
        """The same preprocessing with another resize mode (``"crop"``, ``"squash"`` or ``"full"``)."""
        return replace(self, mode=mode)

    def to_dict(self) -> dict:
        """The constructor arguments as JSON values (tuples become lists)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.init}

    @classmethod
    def from_dict(cls, settings: dict) -> Preprocess:
        """The inverse of :meth:`to_dict`: lists become tuples again."""
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}
        return cls(**values)

    def __call__(self, im: Image.Image) -> tuple[Tensor, Geometry]:
        """``(Tensor[3, size, size], geometry)``: ``im`` resized and normalized for the model."""
        resized, geo = self.resize(im)
        return self.to_tensor(resized), geo


def _plain(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


@dataclass
class Batch:
    """Preprocessed images of the files that could be read, and errors naming those that could not."""

    images: Tensor  # (N, 3, S, S)
    paths: list[str]
    geometries: list[Geometry]
    errors: list[BadImage]
    originals: list[Image.Image] | None = None  # the decoded files, when asked for
    also: Tensor | None = None  # (N, 3, S', S') the same files by load_batch's also= preprocessing, when given


def load_batch(
    paths: Sequence[str | os.PathLike],
    preprocess: Preprocess,
    keep_originals: bool = False,
    executor: Executor | None = None,
    crops: Sequence[Sequence[int] | None] | None = None,
    also: Preprocess | None = None,
) -> Batch:
    """Read and preprocess images; an unreadable file becomes an entry of ``errors``, not an exception.

    With an ``executor`` (threads: PIL decodes without holding the GIL) files are read in parallel;
    the batch keeps the order of ``paths``. ``crops`` gives one box ``(x0, y0, x1, y1)`` (inclusive,
    in the file's upright pixels) or None per path: the image is cut to that box, clipped to the
    image, before ``preprocess``; a box with nothing inside the image makes an error for that file.
    With crops, ``geometries`` and ``originals`` describe the cropped images. ``also``: a second
    preprocessing of each decoded file, stacked in ``Batch.also`` (two input sizes, one decode).
    """
    if crops is not None and len(crops) != len(paths):
        raise InvalidArgument(
            "crops", f"crops must give one box or None per path: {len(crops)} crops for {len(paths)} paths"
        )

    def read(
        p: str | os.PathLike, box: Sequence[int] | None
    ) -> tuple[Image.Image, Tensor, Geometry, Tensor | None] | BadImage:
        try:
            im = open_image(p)
            if box is not None:
                im = crop_to_box(im, box, p)
            return (im, *preprocess(im), None if also is None else also(im)[0])
        except BadImage as err:
            return err

    boxes = crops if crops is not None else [None] * len(paths)
    results = executor.map(read, paths, boxes) if executor is not None else map(read, paths, boxes)
    tensors, good, geometries, errors, originals = [], [], [], [], []
    seconds: list[Tensor] = []  # the images by also=
    for p, result in zip(paths, results, strict=True):
        if isinstance(result, BadImage):
            errors.append(result)
            continue
        im, x, geo, second = result
        tensors.append(x)
        if second is not None:
            seconds.append(second)
        good.append(str(p))
        geometries.append(geo)
        if keep_originals:
            originals.append(im)
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        raise InvalidArgument(
            "paths",
            f"the {preprocess.mode} mode gives these images {len(shapes)} different shapes; one batch holds one "
            "shape (load images of other shapes in batches of their own)",
        )
    images = torch.stack(tensors) if tensors else torch.empty(0, 3, preprocess.size, preprocess.size)
    more = None
    if also is not None:
        more = torch.stack(seconds) if seconds else torch.empty(0, 3, also.size, also.size)
    return Batch(images, good, geometries, errors, originals if keep_originals else None, more)


def crop_to_box(im: Image.Image, box: Sequence[int], path: str | os.PathLike = "<image>") -> Image.Image:
    """The part of ``im`` inside the inclusive box ``(x0, y0, x1, y1)``, clipped to the image.

    A box that leaves no pixel inside the image raises :class:`BadImage` naming ``path``.
    """
    x0, y0, x1, y1 = (int(v) for v in box)
    w, h = im.size
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w - 1, x1), min(h - 1, y1)
    if cx1 < cx0 or cy1 < cy0:
        raise BadImage(path, f"crop box {(x0, y0, x1, y1)} has no pixel inside the {w}x{h} image")
    return im.crop((cx0, cy0, cx1 + 1, cy1 + 1))  # PIL's box is exclusive at the right and bottom
