"""Images in, normalized batches out, with the geometry that maps model pixels back to the file."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

__all__ = ["Batch", "BadImage", "Geometry", "Preprocess", "load_batch", "open_image"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ResizeMode = Literal["crop", "squash"]


class BadImage(ValueError):
    """A file that could not be read as an image; the message names the file."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open any PIL-readable file as an upright 8-bit RGB image.

    EXIF orientation is applied; transparency is composited on white; 16-bit and float grayscale
    are scaled to 8 bits by their type's range rather than clipped.
    """
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            return to_rgb(im)
    except FileNotFoundError:
        raise BadImage(path, "no such file") from None
    except IsADirectoryError:
        raise BadImage(path, "is a directory") from None
    except Exception as err:  # noqa: BLE001 - PIL raises many types for broken files
        raise BadImage(path, f"not a readable image ({type(err).__name__}: {err})") from None


def to_rgb(im: Image.Image) -> Image.Image:
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
    """Where the model's input square lies in the original image.

    The original image (width x height) is resized to (resized_width x resized_height) and the
    model sees the size x size window at (left, top) of it: all of it for ``squash``, a centred
    window for ``crop``. Coordinates are continuous, in pixel edges.
    """

    width: int
    height: int
    size: int
    resized_width: int
    resized_height: int
    left: int
    top: int

    @property
    def scale_x(self) -> float:
        """Original pixels per resized pixel."""
        return self.width / self.resized_width

    @property
    def scale_y(self) -> float:
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
    """Resize + normalize, as torchvision's eval transform (``crop``) or the WSOL protocol (``squash``)."""

    size: int = 224
    resize_size: int = 256  # shorter side before the centre crop (``crop`` mode only)
    mode: ResizeMode = "crop"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    _resample: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        if self.mode not in ("crop", "squash"):
            raise ValueError(f"resize mode must be 'crop' or 'squash', not {self.mode!r}")
        names = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}
        if self.interpolation not in names:
            raise ValueError(f"interpolation must be one of {sorted(names)}, not {self.interpolation!r}")
        object.__setattr__(self, "_resample", names[self.interpolation])

    def geometry(self, width: int, height: int) -> Geometry:
        s = self.size
        if self.mode == "squash":
            return Geometry(width, height, s, s, s, 0, 0)
        # torchvision's Resize(int): shorter side to resize_size, longer side truncated.
        if width <= height:
            rw, rh = self.resize_size, int(self.resize_size * height / width)
        else:
            rw, rh = int(self.resize_size * width / height), self.resize_size
        # torchvision's CenterCrop offsets.
        return Geometry(width, height, s, rw, rh, int(round((rw - s) / 2.0)), int(round((rh - s) / 2.0)))

    def resize(self, im: Image.Image) -> tuple[Image.Image, Geometry]:
        geo = self.geometry(*im.size)
        if self.mode == "squash":
            return im.resize((self.size, self.size), self._resample), geo
        resized = im.resize((geo.resized_width, geo.resized_height), self._resample)
        window = (geo.left, geo.top, geo.left + self.size, geo.top + self.size)
        return resized.crop(window), geo

    def to_tensor(self, im: Image.Image) -> Tensor:
        """An 8-bit RGB image to a normalized (3, H, W) float tensor."""
        x = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return x.sub_(mean).div_(std)

    def __call__(self, im: Image.Image) -> tuple[Tensor, Geometry]:
        resized, geo = self.resize(im)
        return self.to_tensor(resized), geo


@dataclass
class Batch:
    """Preprocessed images of the files that could be read, and errors naming those that could not."""

    images: Tensor  # (N, 3, S, S)
    paths: list[str]
    geometries: list[Geometry]
    errors: list[BadImage]
    originals: list[Image.Image] | None = None  # the decoded files, when asked for


def load_batch(
    paths: Sequence[str | os.PathLike],
    preprocess: Preprocess,
    keep_originals: bool = False,
    executor: Executor | None = None,
) -> Batch:
    """Read and preprocess images; an unreadable file becomes an entry of ``errors``, not an exception.

    With an ``executor`` (threads: PIL decodes without holding the GIL) files are read in parallel;
    the batch keeps the order of ``paths``.
    """

    def read(p: str | os.PathLike) -> tuple[Image.Image, Tensor, Geometry] | BadImage:
        try:
            im = open_image(p)
            return (im, *preprocess(im))
        except BadImage as err:
            return err

    results = executor.map(read, paths) if executor is not None else map(read, paths)
    tensors, good, geometries, errors, originals = [], [], [], [], []
    for p, result in zip(paths, results):
        if isinstance(result, BadImage):
            errors.append(result)
            continue
        im, x, geo = result
        tensors.append(x)
        good.append(str(p))
        geometries.append(geo)
        if keep_originals:
            originals.append(im)
    images = torch.stack(tensors) if tensors else torch.empty(0, 3, preprocess.size, preprocess.size)
    return Batch(images, good, geometries, errors, originals if keep_originals else None)
