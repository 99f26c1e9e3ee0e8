"""Hooks and the streaming loop: every analysis reads a model's internals through here.

:func:`vitlens.capture` hooks named layers (see :func:`vitlens.models.layers.layer_names`) and
always removes its hooks; :func:`vitlens.run_with_cache` returns every activation of one batch by
name; :func:`image_batches` validates and batches a tensor, Dataset or DataLoader;
:func:`eval_mode` and :func:`resolve_device` set where and how a model runs;
:class:`BatchRows` gathers the rows an analysis keeps of every batch into one allocation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from vitlens.models.layers import layer_names, resolve_layers

__all__ = [
    "BatchRows",
    "ImageSource",
    "RunOptions",
    "Taps",
    "Transform",
    "capture",
    "captured",
    "eval_mode",
    "gather",
    "gather_batches",
    "gather_sum",
    "image_batches",
    "inference_layout",
    "interleave",
    "layer_shapes",
    "num_examples",
    "process_shard",
    "resolve_device",
    "run_with_cache",
    "stream",
]

Transform = Callable[[torch.Tensor], torch.Tensor]
"""A function applied to an activation inside its hook, e.g. reducing it to a Gram matrix."""

ImageSource = torch.Tensor | Dataset | DataLoader
"""Images to analyse: an ``(N, C, H, W)`` tensor, a Dataset of images or ``(image, ...)``
tuples, or a DataLoader yielding batches of those."""


@dataclass(frozen=True)
class RunOptions:
    """How an analysis runs, handed over in one piece: ``analysis(model, images, run=run)``.

    Every analysis takes one ``run`` (its default keeps the analysis's own batch size) and
    hands it on to :func:`stream` and to the analyses it calls, so a profile (or the
    command line) settles these once instead of each call passing them again.

    Attributes:
        batch_size: images per minibatch (a CKA batch needs more than 3 images).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda:1"``...; the models
            are moved there.
        progress: show progress bars.
    """

    batch_size: int = 64
    device: str | torch.device = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int):
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size}")

    def with_batch_size(self, batch_size: int) -> RunOptions:
        """The same options with another ``batch_size``."""
        return replace(self, batch_size=batch_size)


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


def _check_last_batch(total: int, batch_size: int, min_batch: int) -> None:
    """Refuse, before any work, empty data or a last batch smaller than ``min_batch``."""
    if total == 0:
        raise ValueError("data yielded no images; pass at least one image")
    if 0 < total % batch_size < min_batch:
        raise ValueError(
            f"{total} images in batches of {batch_size} leave a last batch of "
            f"{total % batch_size}, but each batch needs at least {min_batch}; choose a "
            "batch size that divides the data better, or drop the last images explicitly "
            "(a DataLoader's drop_last=True)."
        )


def image_batches(
    data: ImageSource,
    batch_size: int,
    device: torch.device,
    min_batch: int = 1,
    shard: tuple[int, int] = (0, 1),
) -> tuple[Iterator[torch.Tensor], int | None]:
    """Validate ``data`` now and return its ``(n, C, H, W)`` batches on ``device``.

    A tensor or Dataset is cut into batches of ``batch_size`` in order; a DataLoader keeps
    its own batching. When the number of images is known, a last batch smaller than
    ``min_batch`` is refused here, before the work of every other batch.

    Args:
        data: ``(N, C, H, W)`` tensor, Dataset or DataLoader.
        batch_size: images per batch (tensors and Datasets).
        device: where the batches go.
        min_batch: the fewest images a batch may have.
        shard: ``(rank, world_size)``: keep batches ``rank, rank + world_size, ...`` only
            (the others are still read from a Dataset or DataLoader, but not moved).

    Returns:
        ``(batches, count)``: an iterator of image batches and the number of batches kept
        (``None`` when unknown), e.g. for a progress bar.
    """
    if isinstance(data, DataLoader):
        loader = data
        try:
            count = len(data)
        except TypeError:
            count = None
        size = data.batch_size
        try:
            total = len(data.sampler)
        except TypeError:
            total = None
        if size is not None and total is not None and not data.drop_last:
            _check_last_batch(total, size, min_batch)
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
        if total is not None:
            _check_last_batch(total, batch_size, min_batch)
    rank, world = shard
    if not 0 <= rank < world:
        raise ValueError(
            f"shard must be (rank, world_size) with 0 <= rank < world_size, got {shard}"
        )
    batches = (
        _images_of(batch).to(device, non_blocking=True)
        for index, batch in enumerate(loader)
        if index % world == rank
    )
    if count is not None:
        count = len(range(rank, count, world))
    return batches, count


def inference_layout(images: torch.Tensor) -> torch.Tensor:
    """``(n, C, H, W)`` images in the memory layout a forward pass without gradients runs
    fastest on: channels-last on the CPU (the zoo's ResNet 1.5x faster at 32x32, one thread;
    ViTs and Mixers unchanged), as given elsewhere. The values and the shape are the same.

    Backward passes to the input keep the given layout: the ResNet's gradients with
    respect to channels-last images took 1.3x longer here.
    """
    if images.device.type != "cpu" or images.dim() != 4:
        return images
    return images.contiguous(memory_format=torch.channels_last)


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
    transform: Transform | Mapping[str, Transform] | None = None,
    detach: bool = True,
) -> Iterator[dict[str, torch.Tensor]]:
    """Hook ``layers`` of ``model``; yield a dict filled with their activations on each forward.

    Args:
        model: any ``nn.Module``.
        layers: layer names (see :func:`layer_names`; any module path also works).
        transform: optional function applied to each detached activation inside the hook,
            e.g. to reduce ``(n, T, d)`` features to an ``(n, n)`` Gram at once so that the
            full activations of all layers are never held together. A mapping gives
            each named layer its own function (layers it does not name are kept as is).
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
        reduce = transform.get(name) if isinstance(transform, Mapping) else transform
        if reduce is None:
            store[name] = tensor.clone()
            return
        result = reduce(tensor)
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
        model(inference_layout(images))
    missing = [name for name in layers if name not in store]
    if missing:
        raise RuntimeError(f"layers {missing} did not run during the forward pass")
    return {name: store[name] for name in layers}


def layer_shapes(model: nn.Module, layers: Sequence[str]) -> dict[str, torch.Size]:
    """Each layer's activation shape for one image, read from one blank (all-zero) image of
    the model's input size (``model.pretrained_cfg["input_size"]``): no data needed.

    For checks and choices made before a whole computation (which layer's map is large
    enough, how many tokens a layer has). The model runs in eval mode (so a BatchNorm in
    training mode keeps its running statistics), every module's flag restored after.

    Returns:
        ``{layer: shape}``, batch dimension 1 included, ordered as ``layers``.
    """
    size = tuple(model.pretrained_cfg["input_size"])
    device = next(model.parameters()).device
    blank = torch.zeros(1, *size, device=device)
    with eval_mode(model):
        cache = run_with_cache(model, blank, layers)
    return {name: value.shape for name, value in cache.items()}


# ------------------------------------------------------------------------ the streaming loop


@dataclass(frozen=True)
class Taps:
    """What :func:`stream` reads from one model on every batch.

    Attributes:
        model: the model; :func:`stream` runs it on each batch.
        layers: layer names to capture (see :func:`vitlens.models.layers.layer_names`).
        transform: applied inside the hook (one function, or one per layer name), so that
            only its (usually much smaller) result is kept.
    """

    model: nn.Module
    layers: Sequence[str]
    transform: Transform | Mapping[str, Transform] | None = None


def stream(
    taps: Taps | Sequence[Taps],
    data: ImageSource,
    reduce: Callable[[torch.Tensor, list[dict[str, torch.Tensor]]], None],
    *,
    run: RunOptions,
    desc: str = "",
    min_batch: int = 1,
    gradients: bool = False,
    shard: bool = False,
) -> int:
    """Run every tapped model on every batch of ``data`` and hand each batch to ``reduce``.

    The one loop behind every analysis. It owns what they share: the device (models are
    moved there, in place), eval mode (every module's flag restored after), inference mode
    (or, with ``gradients=True``, gradients with respect to the input), the hooks (always
    removed), batching, the progress bar, and the checks: layer names resolved before the
    first batch, a too-small last batch refused before the work of the others when the
    number of images is known, non-finite images refused, every tapped layer present after
    each forward pass, and data that yields no image.

    Args:
        taps: one :class:`Taps` per model (a model appears at most once).
        data: ``(N, C, H, W)`` tensor, Dataset or DataLoader of preprocessed images.
        reduce: ``reduce(images, stores)`` after each batch's forward passes: ``images`` the
            ``(n, C, H, W)`` batch on the device (requiring grad with ``gradients=True``),
            ``stores[i]`` ``{layer: captured value}`` of ``taps[i]``, every layer present.
        run: batch size, device, progress (:class:`RunOptions`); the batch size applies to
            tensors and Datasets (a DataLoader keeps its own).
        desc: the progress bar's label.
        min_batch: the fewest images a batch may have (4 for minibatch CKA).
        gradients: keep the autograd graph from the input to every tapped layer, e.g. for
            effective receptive fields; the hooks then do not detach.
        shard: under an initialised ``torch.distributed`` process group, this process
            streams only its share of the batches (batch ``i`` goes to rank
            ``i % world_size``: no image dropped or counted twice, uneven shares allowed);
            the caller combines what each rank reduced, e.g. with :func:`gather_sum`.
            Every rank must call ``stream``. Without a process group it has no effect.

    Returns:
        The number of images streamed by all processes together (at least 1).

    Raises:
        ValueError: unknown or missing layers, a batch that is too small, non-finite
            images, or no images at all.
    """
    from tqdm.auto import tqdm

    taps = [taps] if isinstance(taps, Taps) else list(taps)
    if not taps:
        raise ValueError("stream needs at least one Taps(model, layers)")
    if len({id(t.model) for t in taps}) != len(taps):
        raise ValueError("a model appears in more than one Taps; merge its layers into one")
    for tap in taps:
        _check_layer_list(tap.layers)
        if len(tap.layers) == 0:
            raise ValueError(
                f"no layers to read from {type(tap.model).__name__}; name at least one"
            )
        _resolve(tap.model, tap.layers)
    if gradients and torch.is_inference_mode_enabled():
        raise RuntimeError(
            "this analysis takes gradients with respect to the input, which torch.inference_mode "
            "forbids; call it outside `with torch.inference_mode():`"
        )
    dev = resolve_device(run.device)
    for tap in taps:
        tap.model.to(dev)
    rank, world = process_shard() if shard else (0, 1)
    batches, count = image_batches(
        data, run.batch_size, dev, min_batch=min_batch, shard=(rank, world)
    )
    seen, quiet = 0, not run.progress or rank > 0
    with ExitStack() as stack:
        stack.enter_context(torch.enable_grad() if gradients else torch.inference_mode())
        stack.enter_context(eval_mode(*(tap.model for tap in taps)))
        stores = [
            stack.enter_context(
                capture(tap.model, list(tap.layers), transform=tap.transform, detach=not gradients)
            )
            for tap in taps
        ]
        for index, images in enumerate(
            tqdm(batches, total=count, disable=quiet, desc=desc, unit="batch")
        ):
            index = index * world + rank  # the batch's position in the data
            if images.shape[0] < min_batch:
                raise ValueError(
                    f"batch {index} has {images.shape[0]} images, but each batch needs at least "
                    f"{min_batch}; if it is the last batch, use drop_last=True or a batch size "
                    "that divides the data"
                )
            if not torch.isfinite(images).all():
                raise ValueError(
                    f"batch {index} contains NaN or infinite pixel values; every image must be "
                    "finite"
                )
            if gradients:
                images = images.detach().requires_grad_(True)
            else:
                images = inference_layout(images)
            for tap, store in zip(taps, stores, strict=True):
                store.clear()
                tap.model(images)
            for tap, store in zip(taps, stores, strict=True):
                for name in tap.layers:
                    captured(store, name)
            reduce(images, stores)
            seen += images.shape[0]
    if world > 1:
        seen = gather_sum(seen)
    if seen == 0:
        raise ValueError("data yielded no images; pass at least one image")
    return seen


# ------------------------------------------------------------- several processes (torchrun)


def process_shard() -> tuple[int, int]:
    """``(rank, world_size)`` of the default ``torch.distributed`` group; ``(0, 1)`` without."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather(value) -> list:
    """``value`` of every process of the default group, in rank order (``[value]`` alone).

    Objects travel with ``all_gather_object`` (tensors moved to the CPU first), so shapes
    need not be known in advance; meant for sums and estimators of a few MB, not features
    of every image. Every rank must call it.
    """
    world = process_shard()[1]
    if world == 1:
        return [value]
    import torch.distributed as dist

    parts = [None] * world
    dist.all_gather_object(parts, _to_cpu(value))
    return parts


def gather_sum(value):
    """Sum ``value`` over every process of the default group (identity with one process).

    ``value`` is a number, a tensor, a (nested) list or tuple of them, or ``None`` for a
    process that had nothing to add (e.g. it received no batch); the sum skips ``None``.
    Every rank gets the same result, on the CPU.

    Raises:
        ValueError: if every process passed ``None``.
    """
    present = [part for part in gather(value) if part is not None]
    if not present:
        raise ValueError("no process had anything to add; the data yielded no images")
    total = present[0]
    for part in present[1:]:
        total = _add(total, part)
    return total


class BatchRows:
    """Every batch's ``(n, ...)`` rows, in data order, copied as they arrive into one
    tensor allocated once: for ``expected`` rows at the first batch (its shape and dtype),
    twice the rows so far whenever more come.

    Keeping each batch's small tensor instead, allocated while a forward pass's large
    activations come and go, fragments glibc's heap: ``pooled_readings`` of a random-weight
    ViT-B/16's 12 blocks (two readings, 96 images in batches of 4, one thread) grew the
    process by 20.7 MiB per image for 72 KiB of rows; with this class, 0.8 MiB. The paper
    profile's chapter 6 (``scripts/paper_dry_run.py``) peaked at 9.0 GiB before, 3.8 GiB
    after, for 3.5 GiB of weights.

    Args:
        expected: rows this process will see (``num_examples`` divided among the
            processes), or ``None`` when unknown.
    """

    def __init__(self, expected: int | None = None) -> None:
        if expected is not None and (not isinstance(expected, int) or expected < 0):
            raise ValueError(f"expected must be None or an integer >= 0, got {expected!r}")
        self._expected = expected
        self._storage: torch.Tensor | None = None
        self._sizes: list[int] = []
        self._filled = 0

    @classmethod
    def for_data(cls, data: ImageSource) -> BatchRows:
        """Storage for this process's share of ``data`` (see ``stream(shard=True)``)."""
        total, world = num_examples(data), process_shard()[1]
        return cls(None if total is None else -(-total // world))

    def add(self, rows: torch.Tensor) -> None:
        """Copy one batch's ``(n, ...)`` rows after the ones before."""
        count, start = rows.shape[0], self._filled
        storage = self._storage
        if storage is not None and rows.shape[1:] != storage.shape[1:]:
            raise ValueError(
                f"batch rows of shape {tuple(rows.shape)} do not match the earlier batches' "
                f"{tuple(storage.shape[1:])} per row"
            )
        if storage is None or start + count > storage.shape[0]:
            capacity = max(start + count, self._expected or 0, 2 * start)
            grown = rows.new_empty((capacity, *rows.shape[1:]))
            if storage is not None:
                grown[:start] = storage[:start]
            self._storage = storage = grown
        storage[start : start + count] = rows
        self._sizes.append(count)
        self._filled += count

    def gathered(self) -> torch.Tensor:
        """``(N, ...)`` the rows of every process in data order (as :func:`gather_batches`);
        storage it did not fill is given back."""
        storage = self._storage
        if process_shard()[1] > 1:  # every process's batches, back in data order
            local = [] if storage is None else list(storage[: self._filled].split(self._sizes))
            return torch.cat(gather_batches(local))
        if storage is None:
            raise ValueError("no batch was added; the data yielded no images")
        return storage if self._filled == storage.shape[0] else storage[: self._filled].clone()


def gather_batches(items: list) -> list:
    """Per-batch items of every process, back in data order (see ``stream(shard=True)``).

    Rank ``r`` holds the items of batches ``r, r + world_size, ...``; every rank gets the
    full list. Identity with one process.
    """
    if process_shard()[1] == 1:
        return items
    return interleave(gather(items))


def interleave(shares: list[list]) -> list:
    """Per-rank lists of per-batch items (rank ``r`` holding batches ``r, r + W, ...``) back
    in data order: ``[shares[0][0], shares[1][0], ..., shares[0][1], ...]``."""
    world = len(shares)
    total = sum(len(share) for share in shares)
    return [shares[i % world][i // world] for i in range(total)]


def _to_cpu(value):
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def _add(a, b):
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            raise ValueError(f"processes reduced different structures ({len(a)} vs {len(b)})")
        return type(a)(_add(x, y) for x, y in zip(a, b, strict=True))
    return a + b
