"""Hooks and the streaming loop: every analysis reads a model's internals through here.

:func:`capture` hooks named layers (see :func:`vitlens.models.layers.layer_names`) and
always removes its hooks; :func:`run_with_cache` returns every activation of one batch by
name; :func:`image_batches` validates and batches a tensor, Dataset or DataLoader;
:func:`eval_mode` and :func:`resolve_device` set where and how a model runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from vitlens.models.layers import layer_names, resolve_layers

__all__ = [
    "ImageSource",
    "capture",
    "captured",
    "eval_mode",
    "image_batches",
    "num_examples",
    "resolve_device",
    "run_with_cache",
]

ImageSource = torch.Tensor | Dataset | DataLoader
"""Images to analyse: an ``(N, C, H, W)`` tensor, a Dataset of images or ``(image, ...)``
tuples, or a DataLoader yielding batches of those."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` means CUDA when available, else CPU; anything else goes to ``torch.device``."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _images_of(batch) -> torch.Tensor:
    """The image tensor of one batch: the batch itself, its first element, or ``batch["image"]``."""
    if isinstance(batch, dict):
        for key in ("image", "images", "pixel_values", "x"):
            if key in batch:
                return batch[key]
        raise ValueError(f"cannot find images in a dict batch with keys {sorted(batch)}")
    if isinstance(batch, (tuple, list)):
        batch = batch[0]
    if not isinstance(batch, torch.Tensor) or batch.dim() != 4:
        shape = tuple(batch.shape) if isinstance(batch, torch.Tensor) else type(batch).__name__
        raise ValueError(f"expected an image batch of shape (n, C, H, W), got {shape}")
    return batch


def num_examples(data: ImageSource) -> int | None:
    """Number of images in ``data``, or ``None`` when it cannot be known in advance."""
    if isinstance(data, DataLoader):
        data = data.dataset
    try:
        return len(data)
    except TypeError:
        return None


def image_batches(
    data: ImageSource, batch_size: int, device: torch.device, min_batch: int = 1
) -> tuple[Iterator[torch.Tensor], int | None]:
    """Validate ``data`` now and return its ``(n, C, H, W)`` batches on ``device``.

    A tensor or Dataset is cut into batches of ``batch_size`` in order; a DataLoader keeps
    its own batching. When the number of images is known, a last batch smaller than
    ``min_batch`` is refused here, before the work of every other batch.

    Returns:
        ``(batches, count)``: an iterator of image batches and the number of batches
        (``None`` when unknown), e.g. for a progress bar.
    """
    if isinstance(data, DataLoader):
        loader = data
        try:
            count = len(data)
        except TypeError:
            count = None
    else:
        if not isinstance(batch_size, int) or batch_size < min_batch:
            raise ValueError(f"batch_size must be an integer >= {min_batch}, got {batch_size!r}")
        if isinstance(data, torch.Tensor):
            if data.dim() != 4:
                raise ValueError(f"images must have shape (N, C, H, W), got {tuple(data.shape)}")
            loader = data.split(batch_size)
        else:
            loader = DataLoader(data, batch_size=batch_size, shuffle=False)
        total = num_examples(data)
        count = None if total is None else -(-total // batch_size)
        if total is not None and 0 < total % batch_size < min_batch:
            raise ValueError(
                f"{total} images in batches of {batch_size} leave a last batch of "
                f"{total % batch_size}, but each batch needs at least {min_batch}; choose a "
                "batch size that divides the data better or drop the last images explicitly."
            )
    batches = (_images_of(batch).to(device, non_blocking=True) for batch in loader)
    return batches, count


@contextmanager
def eval_mode(*models: nn.Module) -> Iterator[None]:
    """Put models in eval mode for the duration, then restore every submodule's own flag.

    ``model.train(flag)`` alone would set all submodules alike, so a submodule the user had
    put in eval mode (e.g. frozen BatchNorm) would come back in training mode; each module's
    flag is remembered and restored instead.
    """
    flags = [(module, module.training) for model in models for module in model.modules()]
    try:
        for m in models:
            m.eval()
        yield
    finally:
        for module, flag in flags:
            module.training = flag


def _first_tensor(value) -> torch.Tensor:
    """A hook's output (or input tuple) reduced to its first tensor."""
    while isinstance(value, (tuple, list)):
        if not value:
            raise ValueError("a hooked module produced an empty tuple; nothing to capture")
        value = value[0]
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"a hooked module produced {type(value).__name__}, not a tensor")
    return value


def _check_layer_list(layers) -> None:
    """Refuse a string where a list of layer names is expected."""
    if isinstance(layers, str):
        raise TypeError(
            f"layers must be a sequence of names such as [{layers!r}], not the string {layers!r}"
        )


def _resolve(model: nn.Module, layers: Sequence[str]):
    """:func:`resolve_layers`, saying so when the names look like a string split into
    characters (``list("blocks.0")``, e.g. from ``list(layers)`` on a string)."""
    _check_layer_list(layers)
    try:
        return resolve_layers(model, layers)
    except ValueError:
        names = list(layers)
        if len(names) > 1 and all(isinstance(n, str) and len(n) == 1 for n in names):
            joined = "".join(names)
            raise TypeError(
                f"layers looks like the string {joined!r} split into characters; pass a list "
                f"of layer names, e.g. [{joined!r}]"
            ) from None
        raise


def _shares_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``a`` is (a view of) the memory of ``b``, so an in-place op on ``b`` changes it."""
    if a.device != b.device or a.numel() == 0 or b.numel() == 0:
        return False
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


@contextmanager
def capture(
    model: nn.Module,
    layers: Sequence[str],
    *,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    detach: bool = True,
) -> Iterator[dict[str, torch.Tensor]]:
    """Hook ``layers`` of ``model``; yield a dict filled with their activations on each forward.

    Args:
        model: any ``nn.Module``.
        layers: layer names (see :func:`layer_names`; any module path also works).
        transform: optional function applied to each detached activation inside the hook,
            e.g. to reduce ``(n, T, d)`` features to an ``(n, n)`` Gram at once so that the
            full activations of all layers are never held together.
        detach: detach each activation from the autograd graph (the default); ``False``
            keeps the graph, e.g. to take gradients of activations with respect to the input
            (:func:`vitlens.analyses.receptive.effective_receptive_field`).

    Yields:
        ``{name: tensor}``; each forward pass overwrites the entries. Tuple outputs are
        reduced to their first element; tensors are detached unless ``detach=False``.
        Every entry is a copy that later in-place operations of the forward pass (timm's
        ``ReLU(inplace=True)``, ``x += shortcut`` in a classic ResNet block) cannot
        overwrite: without ``transform`` the activation is cloned in the hook; with one, its
        result is cloned only if it still shares memory with the activation (so a Gram or a
        pooled feature costs no copy).

    Every hook is removed on exit, also when the forward pass raises.
    """
    points = _resolve(model, layers)
    modules = dict(model.named_modules())
    store: dict[str, torch.Tensor] = {}
    handles = []

    def record(name: str, value) -> None:
        tensor = _first_tensor(value)
        tensor = tensor.detach() if detach else tensor
        if transform is None:
            store[name] = tensor.clone()
            return
        result = transform(tensor)
        if isinstance(result, torch.Tensor) and _shares_memory(result, tensor):
            result = result.clone()
        store[name] = result

    try:
        for point in points:
            module = modules[point.module]
            if point.where == "input":
                hook = module.register_forward_pre_hook(
                    lambda _m, args, name=point.name: record(name, args)
                )
            else:
                hook = module.register_forward_hook(
                    lambda _m, _args, out, name=point.name: record(name, out)
                )
            handles.append(hook)
        yield store
    finally:
        for handle in handles:
            handle.remove()


def captured(store: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """``store[name]`` after a forward pass, or a ValueError if that layer never ran.

    A module can exist and yet be skipped by the forward pass (e.g. timm's
    ``attn.attn_drop`` under fused attention, or a layer of an unused head).
    """
    if name not in store:
        raise ValueError(
            f"layer {name!r} exists but did not run during the forward pass; choose a layer "
            f"on the forward path (captured this pass: {list(store)[:5]}...)"
        )
    return store[name]


def run_with_cache(
    model: nn.Module, images: torch.Tensor, layers: Sequence[str] | None = None
) -> dict[str, torch.Tensor]:
    """Run ``model`` on ``images`` and return every requested activation, by name, in order.

    Args:
        model: a supported model (or any module, with explicit ``layers``).
        images: ``(n, C, H, W)`` input batch on the model's device.
        layers: names to keep; default ``layer_names(model, "all")``.

    Returns:
        ``{name: activation}`` ordered as ``layers``.
    """
    if layers is not None:
        _check_layer_list(layers)
    layers = list(layer_names(model) if layers is None else layers)
    with torch.inference_mode(), capture(model, layers) as store:
        model(images)
    missing = [name for name in layers if name not in store]
    if missing:
        raise RuntimeError(f"layers {missing} did not run during the forward pass")
    return {name: store[name] for name in layers}
