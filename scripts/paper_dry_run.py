"""Run the chapters on the ``paper`` profile's architectures, offline, and record their cost.

The paper profile needs pretrained timm weights, Imagenette and CIFAR-10, hence a network
(and in practice a GPU). This script runs every chapter with ``VITLENS_PROFILE=paper`` on
this machine all the same: the timm models are built with *random* weights
(``pretrained=False``), Imagenette and CIFAR-10 are replaced by small folders of random
images in their layout (10 class folders), and the profile measures a few images (its
``num_images``; its batch size a quarter of that). Everything else is the real code:
224/240 px preprocessing from each model's timm data config, 14x14 and 15x15 token grids,
ViT-L and Mixer-B, the chapters' analyses and plots. The numbers are meaningless; a chapter
that raises is a bug in the paper profile.
A receptive field the chapter samples on ``k`` channels per layer is sampled on
``ERF_CHANNELS_RUN`` here (``k`` backward passes of ViT-B per image and layer are hours on a
CPU), each of its backward passes counted ``k / ERF_CHANNELS_RUN`` times.

It also records what each chapter costs (``benchmarks/results/paper_dry_run.json``): its
wall and CPU seconds and its peak resident memory and, per model it loads, the
images that went forward through the model and backward to the input, split into passes
over images drawn at the profile's ``num_images`` (or a number computed from it: they
scale with it) and passes over a number the chapter fixes itself; per model, its
parameters, forward FLOPs per image and activation memory (:func:`vitlens.book.costs.
model_cost`, on the meta device). From the record, :func:`vitlens.book.costs.cost_table`
writes the teacher's guide's cost tables (``book/_paper_cost.md``).

usage: python scripts/paper_dry_run.py [notebooks/NN_name.ipynb ...] [--images N]
       python scripts/paper_dry_run.py --table-only   (rewrite the tables from the record)
Each chapter runs as a plain Python script (its code cells, the explorers' left out) in its
own process; the scripts and their output go to ``_build/paper_dry_run/``. A run of some
chapters updates their entries of the record; exits 1 if any chapter failed. Chapters 5, 6
and 8 probe 1,024 images with each of their models (ViT-L among them), which makes them by
far the longest to dry-run on a CPU. (Run in a Jupyter kernel, two such chapters hung here:
the kernel lost its reply socket, ``ZMQError: Socket operation on non-socket``, and the
client waited on.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import numpy as np
import torch
from PIL import Image

from vitlens.book.costs import cost_table, model_cost

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "_build" / "paper_dry_run"
RECORD = ROOT / "benchmarks" / "results" / "paper_dry_run.json"
TABLE = ROOT / "book" / "_paper_cost.md"

# Runs first in each chapter's script, after `_root`, `_images` and `_batch` are set: random
# timm weights, fake Imagenette and CIFAR-10, few images; and the counters of the record.
SETUP = """\
import dataclasses
import json
import operator
from pathlib import Path

import torch

import vitlens
import vitlens.analyses.receptive
import vitlens.book.profiles
import vitlens.data
import vitlens.data.sources
import vitlens.models
import vitlens.streaming

_Profile = vitlens.book.profiles.Profile


class _PerImage(int):
    \"\"\"A number of images that scales with the profile's num_images, and so does any
    whole number computed from it (num_images // 2...).\"\"\"


def _scaled(op, reflected=False):
    def method(self, other):
        value = op(other, int(self)) if reflected else op(int(self), other)
        return _PerImage(value) if type(value) is int else value

    return method


for _name, _op in (("add", operator.add), ("sub", operator.sub), ("mul", operator.mul),
                   ("floordiv", operator.floordiv)):
    setattr(_PerImage, f"__{_name}__", _scaled(_op))
    setattr(_PerImage, f"__r{_name}__", _scaled(_op, reflected=True))


class _ProfileBatch(int):
    \"\"\"The profile's batch size (a batch size a chapter fixes itself is a plain int).\"\"\"

# ------------------------------------------------------------------ counters of the record
_PASSES = {}
# whether the streamed images scale with num_images; the batch size the stream asked for;
# the model whose forward pass took gradients last
_STATE = {"scales": None, "batch": None, "grad_model": None, "channel_scale": 1}
_NOT_TESTABLE = set()
_DATASETS = set()
_DRAWN = {}  # id(dataset) -> (dataset, whether its number of images scales)


def _entry(name):
    def split():
        return {"per_image": 0, "fixed": 0}

    def batches():
        return {"profile": False, "chapter": 0}

    return _PASSES.setdefault(name, {
        "loaded": 0,
        "forward": split(),
        "backward": split(),
        "batch": {"forward": batches(), "backward": batches()},
    })


def _add(name, direction, images, batch):
    \"\"\"Count `images` passes of a batch of `batch` images. The batch the paper profile
    would run: the profile's own (flagged), or one the chapter fixes: as asked for if the
    images scale (there are enough of them at the paper's count), else as seen.\"\"\"
    entry = _entry(name)
    entry[direction]["per_image" if _STATE["scales"] else "fixed"] += images
    asked, largest = _STATE["batch"], entry["batch"][direction]
    if isinstance(asked, _ProfileBatch):
        largest["profile"] = True
    else:
        paper = asked if _STATE["scales"] and asked else batch
        largest["chapter"] = max(largest["chapter"], paper)


def _counted(name, model):
    \"\"\"Count the images through `model`'s first convolution (once per image forward).\"\"\"
    _entry(name)["loaded"] += 1
    first = model.pretrained_cfg.get("first_conv")
    stem = model.get_submodule(first) if first else model

    def hook(_module, args):
        images = args[0]
        if images.requires_grad:
            _STATE["grad_model"] = name
        _add(name, "forward", images.shape[0], images.shape[0])

    stem.register_forward_pre_hook(hook)
    return model


_grad = torch.autograd.grad


def _counted_grad(outputs, inputs, grad_outputs=None, *args, is_grads_batched=False, **kwargs):
    \"\"\"torch.autograd.grad, counting `images x channels` backward passes to the input.\"\"\"
    first = inputs[0] if isinstance(inputs, (tuple, list)) else inputs
    seeds = grad_outputs[0] if isinstance(grad_outputs, (tuple, list)) else grad_outputs
    if _STATE["grad_model"] is not None and first.dim() == 4:
        channels = (seeds.shape[0] if is_grads_batched else 1) * _STATE["channel_scale"]
        _add(_STATE["grad_model"], "backward", first.shape[0] * channels, first.shape[0])
    return _grad(outputs, inputs, grad_outputs, *args, is_grads_batched=is_grads_batched,
                 **kwargs)


torch.autograd.grad = _counted_grad

# Sampled receptive fields on _erf_channels_run channels per layer instead of the chapter's k
# (a CPU cannot afford k backward passes of ViT-B per image and layer): each backward pass
# they take is counted k / _erf_channels_run times, the passes the chapter asks for.
_receptive_fields = vitlens.analyses.receptive._receptive_fields


def _fewer_channels(*args, sample_channels=None, **kwargs):
    if sample_channels is None or sample_channels <= _erf_channels_run:
        return _receptive_fields(*args, sample_channels=sample_channels, **kwargs)
    _STATE["channel_scale"] = sample_channels / _erf_channels_run
    try:
        return _receptive_fields(*args, sample_channels=_erf_channels_run, **kwargs)
    finally:
        _STATE["channel_scale"] = 1


vitlens.analyses.receptive._receptive_fields = _fewer_channels

_image_batches = vitlens.streaming.image_batches


def _drawn_scales(data):
    while data is not None:
        kept = _DRAWN.get(id(data))
        if kept is not None and kept[0] is data:
            return kept[1]
        data = getattr(data, "dataset", None)  # a Subset's or a DataLoader's
    return False


def _tagged_batches(data, batch_size, *args, **kwargs):
    \"\"\"The streaming loop's batches, with whether they scale with num_images.\"\"\"
    batches, count = _image_batches(data, batch_size, *args, **kwargs)
    scales = _drawn_scales(data)

    def tagged():
        _STATE["scales"], _STATE["batch"] = scales, batch_size
        try:
            yield from batches
        finally:
            _STATE["scales"], _STATE["batch"] = None, None

    return tagged(), count


vitlens.streaming.image_batches = _tagged_batches

_images, _transfer_images, _premise = _Profile.images, _Profile.transfer_images, _Profile.premise


def _drawn(data, count):
    _DRAWN[id(data)] = (data, isinstance(count, _PerImage))
    return data


def _profile_images(self, model, num_images=None):
    _DATASETS.add(self.image_source)
    count = self.num_images if num_images is None else num_images
    return _drawn(_images(self, model, num_images), count)


def _profile_transfer_images(self, model, num_images):
    _DATASETS.add(self.transfer_source)
    return _drawn(_transfer_images(self, model, num_images), num_images)


def _recorded_premise(self, *roles, name=""):
    _NOT_TESTABLE.update(role for role in roles if not self.has(role))
    return _premise(self, *roles, name=name)


_Profile.images, _Profile.transfer_images = _profile_images, _profile_transfer_images
_Profile.premise = _recorded_premise

# ------------------------------------------------- random weights, fake datasets, few images
_load_model = vitlens.models.load_model


def _random_weights(name, *, pretrained=True, zoo=None, seed=None):
    return _counted(name, _load_model(name, pretrained=False, zoo=zoo, seed=seed))


vitlens.models.load_model = vitlens.load_model = _random_weights
vitlens.book.profiles.load_model = _random_weights


def _fake_imagenette(root, model=None, *, split="val", download=True, transform=None):
    return vitlens.data.image_folder(_root / "imagenette2-320" / "val", model, transform=transform)


def _fake_cifar10(root, model=None, *, train=False, download=True, transform=None):
    return vitlens.data.image_folder(_root / "cifar-10" / "test", model, transform=transform)


vitlens.data.imagenette = vitlens.data.sources.imagenette = _fake_imagenette
vitlens.data.cifar10 = vitlens.data.sources.cifar10 = _fake_cifar10
vitlens.book.profiles.PROFILES["paper"] = dataclasses.replace(
    vitlens.book.profiles.PROFILES["paper"],
    num_images=_PerImage(_images_asked),
    batch_size=_ProfileBatch(_batch),
)
"""

# Runs last: the counters, as one line of JSON (the CPU seconds and the peak memory come
# from the kernel when the process ends, killed or not).
REPORT = """\
print(json.dumps({
    "passes": _PASSES,
    "not_testable": sorted(_NOT_TESTABLE),
    "datasets": sorted(_DATASETS),
}))
"""


ERF_CHANNELS_RUN = 2
"""Channels per layer the dry run samples for a receptive field the chapter samples on more
(an interval over the draw needs 2); its passes are counted as the chapter's."""

# Chapters that need more images than --images: chapter 1 bootstraps over its own minibatches
# of 64 images, and a bootstrap needs at least two.
MIN_IMAGES = {"01_cka.ipynb": 128}


def fake_folder(name: str, size: tuple[int, int], per_class: int) -> Path:
    """A folder of random JPEGs of ``size`` (w, h), 10 class folders, made once per size."""
    root = OUT / f"{name}_{per_class}_per_class"
    rng = np.random.default_rng(0)
    for c in range(10):
        folder = root / f"n0{c:07d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(len(list(folder.glob("*.JPEG"))), per_class):
            pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.JPEG")
    return root


def fake_datasets(images: int) -> Path:
    """Imagenette's validation split (320x240) and CIFAR-10's test split (32x32), fake."""
    root = OUT / "datasets"
    per_class = max(200, -(-images // 10))  # ch. 5 draws 2,000 images, ch. 6 1,024
    links = {
        root / "imagenette2-320" / "val": fake_folder("imagenette", (320, 240), per_class),
        # ch. 8 probes 1,024 images of the second task
        root / "cifar-10" / "test": fake_folder("cifar10", (32, 32), 110),
    }
    for link, target in links.items():
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() and link.resolve() != target.resolve():
            link.unlink()
        if not link.exists():
            link.symlink_to(target.resolve(), target_is_directory=True)
    return root


def book_commit() -> str:
    """The book's commit, short, or ``""`` outside a git checkout."""
    found = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    return found.stdout.strip() if found.returncode == 0 else ""


def chapter_script(notebook: Path, root: Path, images: int) -> str:
    """The chapter's code cells as one Python script, between :data:`SETUP` and
    :data:`REPORT`; the explorers' cells (tagged ``skip-execution``, as the book's build
    skips them) and IPython's ``%``/``!`` lines (the Colab edition's install) left out."""
    nb = nbformat.read(notebook, as_version=4)
    head = (
        f"from pathlib import Path\n\n_root = Path({str(root)!r})\n"
        f"_images_asked = {images}\n_batch = {max(4, images // 4)}\n"
        f"_erf_channels_run = {ERF_CHANNELS_RUN}\n"
    )
    cells = [
        "\n".join(
            # IPython's magics (the Colab edition's install) become a no-op statement
            line[: len(line) - len(line.lstrip())] + "pass"
            if line.lstrip().startswith(("%", "!"))
            else line
            for line in cell.source.splitlines()
        )
        for cell in nb.cells
        if cell.cell_type == "code"
        and "skip-execution" not in cell.get("metadata", {}).get("tags", [])
    ]
    return "\n\n".join([head + SETUP, *cells, REPORT])


def run(notebook: Path, root: Path, images: int, timeout: int) -> dict:
    """Execute one chapter on the paper profile; its entry of the record.

    The chapter runs as a plain Python script in its own process (no Jupyter kernel: a
    kernel busy for long stretches once lost its reply socket here and hung the run), with
    Matplotlib's non-interactive backend; the script and its output are kept in ``OUT``.
    The process's own peak resident memory comes from the kernel when it ends, so a
    chapter killed for memory still says how much it held.
    """
    script = OUT / f"{notebook.stem}.py"
    script.write_text(chapter_script(notebook, root, images))
    env = {**os.environ, "MPLBACKEND": "Agg"}
    outputs = [OUT / f"{notebook.stem}.{name}" for name in ("stdout", "stderr")]
    start = time.perf_counter()
    with outputs[0].open("w") as stdout, outputs[1].open("w") as stderr:
        child = subprocess.Popen(
            [sys.executable, str(script)],
            cwd=notebook.parent,
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
        timed_out = threading.Event()

        def stop_child() -> None:
            timed_out.set()
            child.kill()

        timer = threading.Timer(timeout, stop_child)
        timer.start()
        _, status, usage = os.wait4(child.pid, 0)  # this child's own resource usage
        timer.cancel()
        returncode = os.waitstatus_to_exitcode(status)
        # Popen did not reap the child itself; told its status, it does not try again.
        child.returncode = returncode
    seconds = time.perf_counter() - start
    stdout, stderr = (path.read_text() for path in outputs)
    (OUT / f"{notebook.stem}.log").write_text(stdout + stderr)
    for path in outputs:
        path.unlink()
    error = failure(returncode, stderr, timeout if timed_out.is_set() else None)
    lines = stdout.strip().splitlines()
    counted = json.loads(lines[-1]) if lines and not error else {}  # REPORT's line
    return {
        "error": error,
        "wall_seconds": round(seconds, 1),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_mib": round(usage.ru_maxrss / 1024, 1),  # Linux reports KiB
        "images": images,
        "batch_size": max(4, images // 4),
        "erf_channels_run": ERF_CHANNELS_RUN,
        "passes": counted.get("passes", {}),
        "not_testable": counted.get("not_testable", []),
        "datasets": counted.get("datasets", []),
    }


def failure(returncode: int, stderr: str, timed_out_after: int | None) -> str:
    """Why a chapter's process failed ("" if it did not): past the timeout, killed by a
    signal (SIGKILL is what the out-of-memory killer sends), or the last line of its
    error output (the exception)."""
    if timed_out_after is not None:
        return f"ran past --timeout ({timed_out_after} s)"
    if returncode < 0:
        name = signal.Signals(-returncode).name
        cause = " (the out-of-memory killer sends it: see dmesg)" if name == "SIGKILL" else ""
        return f"killed by {name}{cause}"
    if returncode > 0:
        return (stderr.strip().splitlines() or [f"exit status {returncode}"])[-1]
    return ""


def write_table(record: dict) -> None:
    """The teacher's guide's cost tables, from the record, every chapter of the book shown."""
    TABLE.write_text(cost_table(record, book=[p.name for p in chapter_files()]))


def chapter_files() -> list[Path]:
    """The book's chapters, ``notebooks/NN*.ipynb``, in order."""
    return sorted((ROOT / "notebooks").glob("[0-9][0-9]*.ipynb"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--images", type=int, default=32, help="images per analysis")
    parser.add_argument("--timeout", type=int, default=4 * 3600, help="seconds per chapter")
    parser.add_argument("--note", default="", help="the machine's load, for the record")
    parser.add_argument("--commit", default=None, help="the book's commit (default: git's)")
    parser.add_argument("--table-only", action="store_true", help="only rewrite the tables")
    args = parser.parse_args(argv)
    record = json.loads(RECORD.read_text()) if RECORD.exists() else {"chapters": {}}
    if args.table_only:
        write_table(record)
        return 0
    notebooks = args.notebooks or chapter_files()
    os.environ["VITLENS_PROFILE"] = "paper"  # inherited by every chapter's kernel
    root = fake_datasets(max(args.images, *MIN_IMAGES.values()))
    record.update(
        machine={
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "threads": int(os.environ.get("OMP_NUM_THREADS", "0")) or torch.get_num_threads(),
            "torch": torch.__version__,
            "note": args.note,
        },
    )
    failed = 0
    for notebook in notebooks:
        images = max(args.images, MIN_IMAGES.get(notebook.name, 0))
        entry = run(notebook, root, images, args.timeout)
        entry["commit"] = book_commit() if args.commit is None else args.commit
        record["chapters"][notebook.name] = entry
        failed += bool(entry["error"])
        status = "FAIL" if entry["error"] else "ok  "
        print(
            f"{status} {notebook.name}: {entry['wall_seconds']:.0f} s, peak "
            f"{entry['peak_mib']:.0f} MiB {entry['error']}",
            flush=True,
        )
        names = {name for e in record["chapters"].values() for name in e["passes"]}
        models = record.setdefault("models", {})
        for name in sorted(names - set(models)):
            models[name] = model_cost(name)
        record["chapters"] = dict(sorted(record["chapters"].items()))
        RECORD.write_text(json.dumps(record, indent=1) + "\n")
    write_table(record)  # a failed chapter is shown failed
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
