"""The errors camloc raises on purpose: one base class, one subclass per kind of problem.

Every error here is the user's to fix (a file, an argument, a model camloc cannot explain), and its
message is one line that names the file or the parameter at fault. Parameters are named as Python
spells them (``weights=``, ``resume=True``); an error may list them in ``arguments``, and the
command line translates them to its flags. Anything else that escapes camloc is a bug and keeps its
traceback.

Each class also derives from the built-in exception a caller would expect (``ValueError``,
``FileNotFoundError``, ...), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "BadImage",
    "CamlocError",
    "DatasetError",
    "HeadNotFound",
    "InputTooLarge",
    "InvalidArgument",
    "MissingDependency",
    "ModelFileError",
    "OutputExists",
    "ResumeError",
    "WeightsNotFound",
    "did_you_mean",
]


class CamlocError(Exception):
    """Base of every error camloc raises on purpose; its message is one line.

    Args:
        *args: the message.
        arguments: the parameters the message names as ``name=`` (``("resume",)`` for "pass
            resume=True"), for callers that translate them, such as the command line; None (the
            default) leaves them unsaid.

    Attributes:
        arguments: those parameters, or None when the raise site did not say.
    """

    arguments: tuple[str, ...] | None = None

    def __init__(self, *args: object, arguments: Iterable[str] | None = None) -> None:
        super().__init__(*args)
        if arguments is not None:
            self.arguments = tuple(arguments)


class InvalidArgument(CamlocError, ValueError):
    """A parameter has a value camloc cannot use.

    Args:
        argument: the parameter's Python name (``"target_layer"``), for callers that translate it.
        message: the whole message; it names the parameter itself.
        arguments: every parameter the message names as ``name=`` (see :class:`CamlocError`).
    """

    def __init__(self, argument: str, message: str, *, arguments: Iterable[str] | None = None) -> None:
        super().__init__(message, arguments=arguments)
        self.argument = argument

    def __reduce__(self) -> tuple:  # picklable, for process pools
        return (type(self), (self.argument, str(self)), self.__dict__)


class HeadNotFound(CamlocError, ValueError):
    """The model does not end in global average pooling followed by a linear classifier."""


class DatasetError(CamlocError, ValueError):
    """Bad dataset metadata.

    The message is one line: ``FILE:LINE: what is wrong`` (``FILE: ...`` when no single line is at
    fault); ``path`` and ``line`` hold the location.
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None, line: int | None = None) -> None:
        where = "" if path is None else (f"{path}:{line}: " if line else f"{path}: ")
        super().__init__((where + message).replace("\r", " ").replace("\n", " "))
        self.path = None if path is None else Path(path)
        self.line = line


class BadImage(CamlocError, ValueError):
    """A file that could not be read as an image; the message names the file."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason

    def __reduce__(self) -> tuple:  # picklable, for process pools
        return (type(self), (self.path, self.reason))


class InputTooLarge(CamlocError, ValueError):
    """An input over a size limit (bytes, or an image's pixels); the message names the input and the limit."""


class WeightsNotFound(CamlocError, FileNotFoundError):
    """A pretrained weight file is not on disk; the message names it and where to put it."""


class ModelFileError(CamlocError, ValueError):
    """A model, probe or features file that camloc cannot read: foreign, damaged or too new."""


class ResumeError(CamlocError, ValueError):
    """A run cannot be resumed from what an earlier run left: other settings, or no state."""


class OutputExists(CamlocError, FileExistsError):
    """An output file of an earlier run is in the way of a new one."""


class MissingDependency(CamlocError, ImportError):
    """An optional package is needed for what was asked (the message says which to install)."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` naming the choice closest to ``name``, or ``""`` when none is close.

    Case, spaces, dashes and underscores are ignored, so ``mobilenetv2`` finds ``mobilenet_v2`` and
    ``tabbycat`` finds ``tabby cat``.

    >>> did_you_mean("mobilenetv2", ["resnet50", "mobilenet_v2", "mobilenet_v3_large"])
    " (did you mean 'mobilenet_v2'?)"
    >>> did_you_mean("grad-cam", ["cam", "gradcam", "gradcam++"])
    " (did you mean 'gradcam'?)"
    >>> did_you_mean("zzz", ["cam", "gradcam"])
    ''
    """
    by_key: dict[str, str] = {}
    for choice in choices:
        by_key.setdefault(_squeezed(choice), choice)
    key = _squeezed(name)
    if key in by_key:
        return f" (did you mean {by_key[key]!r}?)"
    close = difflib.get_close_matches(key, list(by_key), n=1, cutoff=0.75)
    return f" (did you mean {by_key[close[0]]!r}?)" if close else ""


def _squeezed(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", str(name).lower())
