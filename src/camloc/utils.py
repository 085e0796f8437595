"""Helpers every stage shares: lazy exports, image suffixes, progress bars, devices, atomic files, versions.

Nothing here imports torch at module level, so the command line can use it before a model loads.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import io
import json
import os
import sys
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn
    from tqdm import tqdm

__all__ = [
    "IMAGE_SUFFIXES",
    "TarMember",
    "readable",
    "atomic_path",
    "naming",
    "camloc_version",
    "default_device",
    "is_image_file",
    "lazy_exports",
    "model_device",
    "progress",
    "versions",
    "write_json",
]

#: File suffixes read as images (matched case-insensitively), in the order a missing one is guessed.
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".pbm")


def lazy_exports(
    package: str, names: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` of a package whose public names are imported on first use.

    This keeps ``import camloc`` and ``camloc --help`` free of torch, OpenCV and numba, which take
    seconds to import.

    Args:
        package: the package's ``__name__``.
        names: public name -> the module that defines it, relative to the package (``".cam"``).
    """

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            if name.startswith("_") or importlib.util.find_spec(f"{package}.{name}") is None:
                raise AttributeError(f"module {package!r} has no attribute {name!r}")
            return importlib.import_module(f"{package}.{name}")  # a submodule: camloc.boxes, ...
        defining = importlib.import_module(module, package)
        # later lookups are plain attributes; every name the module defines is bound now, since importing
        # a submodule binds its own name on the package (camloc.training.train: the module, not the function)
        for other, where in names.items():
            if where == module:
                vars(sys.modules[package])[other] = getattr(defining, other)
        return vars(sys.modules[package])[name]

    def __dir__() -> list[str]:
        return sorted(set(names) | set(vars(sys.modules[package])))

    namesakes = {name for name, where in names.items() if where == f".{name}"}
    if namesakes:
        sys.modules[package].__class__ = _keeping(namesakes)
    return __getattr__, __dir__, sorted(names)


def _keeping(namesakes: set[str]) -> type[types.ModuleType]:
    """A package type on which importing submodule ``x`` binds the name ``x`` it exports, not the module.

    Python binds a submodule's name on its package once the submodule is imported (``from .train import
    ...`` anywhere in the package makes ``camloc.training.train`` the module); for a name the package
    exports from its namesake module (the function ``train`` from ``.train``) that would hide the function.
    """

    class Package(types.ModuleType):
        def __setattr__(self, name: str, value: Any) -> None:
            if (
                name in namesakes
                and isinstance(value, types.ModuleType)
                and value.__name__ == f"{self.__name__}.{name}"
            ):
                value = getattr(value, name)
            super().__setattr__(name, value)

    return Package


def is_image_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` has one of :data:`IMAGE_SUFFIXES` (any case)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


@dataclass(frozen=True)
class TarMember:
    """A file inside an uncompressed tar archive, read in place (the images of WebDataset shards).

    ``str()`` and ``os.fspath()`` give ``ARCHIVE/NAME`` (``shards/000.tar/cat1.jpg``): that names the
    member in messages and per-image rows, but is no file the system opens; read it with
    :meth:`open` or :meth:`read_bytes` (as :func:`camloc.images.open_image` does).

    Attributes:
        archive: the tar file.
        name: the member's name inside it.
        offset: where its data starts in the archive, in bytes.
        size: its length in bytes.
    """

    archive: Path
    name: str
    offset: int
    size: int

    def read_bytes(self) -> bytes:
        """The member's bytes; :class:`EOFError` when the archive ends before they do."""
        with open(self.archive, "rb") as f:
            f.seek(self.offset)
            data = f.read(self.size)
        if len(data) < self.size:
            raise EOFError(f"the archive ends inside this member ({len(data)} of its {self.size} bytes are there)")
        return data

    def open(self) -> io.BytesIO:
        """The member as a binary file in memory."""
        return io.BytesIO(self.read_bytes())

    def __fspath__(self) -> str:
        return f"{self.archive}/{self.name}"

    def __str__(self) -> str:
        return self.__fspath__()


def readable(path: str | os.PathLike) -> str | os.PathLike | io.BytesIO:
    """What a reader taking a path or a binary file (PIL's ``Image.open``) can open: a :class:`TarMember`'s bytes."""
    return path.open() if isinstance(path, TarMember) else path


def progress(
    total: int,
    *,
    desc: str | None = None,
    unit: str = "img",
    enabled: bool | None = None,
    initial: int = 0,
    leave: bool = True,
    position: int | None = None,
) -> tqdm:
    """A progress bar on stderr with rate and ETA; ``enabled=None`` shows it when stderr is a terminal."""
    from tqdm import tqdm

    show = sys.stderr.isatty() if enabled is None else enabled
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit=unit,
        disable=not show,
        file=sys.stderr,
        leave=leave,
        position=position,
    )


def model_device(model: nn.Module | Callable) -> torch.device:
    """The device of a model's first parameter (the CPU for a model without parameters or a plain callable)."""
    import torch

    parameters = getattr(model, "parameters", None)
    first = next(parameters(), None) if callable(parameters) else None
    return first.device if first is not None else torch.device("cpu")


def default_device() -> str:
    """``"cuda"`` when a CUDA device is available, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@contextlib.contextmanager
def naming(path: str | os.PathLike) -> Iterator[None]:
    """Give an operating-system error of the block that names no file (a write's ``ENOSPC``) the name ``path``.

    >>> with naming("out/a.json"):
    ...     raise OSError(28, "No space left on device")
    Traceback (most recent call last):
    OSError: [Errno 28] No space left on device: 'out/a.json'
    """
    try:
        yield
    except OSError as err:
        if err.filename is not None or err.errno is None:
            raise
        raise type(err)(err.errno, err.strerror, os.fspath(path)) from err


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; it replaces ``path`` only if the block succeeds.

    A reader never sees a half-written file, and a crash mid-write leaves the previous file intact.
    An error that names no file (a full disk) is raised naming ``path`` (:func:`naming`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with naming(path):
            yield tmp
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(data: object, path: str | os.PathLike) -> Path:
    """Write ``data`` as indented JSON, atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
    return Path(path)


def camloc_version() -> str:
    """The installed camloc's version (from the package metadata)."""
    try:
        return importlib.metadata.version("camloc")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


def versions() -> dict[str, str | None]:
    """Versions of camloc, torch and torchvision, for results files (read without importing torch)."""
    out: dict[str, str | None] = {"camloc": camloc_version()}
    for name in ("torch", "torchvision"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out
