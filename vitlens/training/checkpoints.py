"""Files the zoo's trainings write, each atomically: float16 safetensors checkpoints, the
manifest (read-modify-write under a folder lock, so side-by-side trainings keep each other's
entries), and the cache of finished first stages (float32, sha256-checked when read)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save
from torch import Tensor, nn

from vitlens.models import ZOO_ARCHS, read_manifest, sha256_file
from vitlens.models.recipe import Recipe
from vitlens.models.zoo import MANIFEST_FORMAT, CorruptCheckpointError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder, fsync, ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; shipped files are world-readable
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, value) -> None:
    """Write ``value`` as indented JSON (one trailing newline) with :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, (json.dumps(value, indent=2) + "\n").encode())


def save_checkpoint(model: nn.Module, path: str | Path, *, metadata: dict | None = None) -> str:
    """Write ``model``'s state dict as float16 safetensors, atomically; returns its sha256.

    Float16 halves the shipped size; loading casts back to float32, and the manifest's
    accuracies are measured on the reloaded float16 weights.
    """
    state = {
        k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.state_dict().items()
    }
    meta = {k: json.dumps(v) for k, v in (metadata or {}).items()}
    path = Path(path)
    atomic_write_bytes(path, save(state, metadata=meta))
    return sha256_file(path)


@contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (POSIX; no-op elsewhere)."""
    try:
        import fcntl
    except ImportError:  # Windows: trainings there run one at a time
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_manifest_entry(directory: str | Path, name: str, entry: dict) -> None:
    """Add or replace ``name`` in ``directory/manifest.json``, atomically.

    The read-modify-write holds a lock on the folder, so trainings running side by side
    do not lose each other's entries.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "manifest.json"
    with locked(directory):
        manifest = {"format": MANIFEST_FORMAT, "models": read_manifest(directory)}
        manifest["models"][name] = entry
        manifest["models"] = dict(sorted(manifest["models"].items()))
        atomic_write_json(path, manifest)


def remove_manifest_entry(directory: str | Path, name: str) -> None:
    """Remove ``name`` from ``directory/manifest.json`` (atomically, under the folder's lock)."""
    directory = Path(directory)
    with locked(directory):
        models = read_manifest(directory)
        models.pop(name, None)
        manifest = {"format": MANIFEST_FORMAT, "models": models}
        atomic_write_json(directory / "manifest.json", manifest)


def install_checkpoint(directory: Path, name: str, entry: dict, pending: str) -> None:
    """Make ``pending`` the checkpoint ``entry["file"]`` of ``name``, safe against a kill.

    1. the manifest names ``pending`` (on disk, hash matching); 2. its bytes replace
    ``entry["file"]`` atomically; 3. the manifest names ``entry["file"]``; 4. ``pending`` goes.
    Between any two steps the manifest names a file whose sha256 it holds.
    """
    write_manifest_entry(directory, name, {**entry, "file": pending})
    atomic_write_bytes(directory / entry["file"], (directory / pending).read_bytes())
    write_manifest_entry(directory, name, entry)
    (directory / pending).unlink()


def _stage_path(cache: str | Path, name: str, pretrain: Recipe, init_from: dict | None) -> Path:
    """Where a first stage is cached: a hash of everything that decides its weights."""
    facts = {"arch": ZOO_ARCHS[name], "pretrain": asdict(pretrain), "init_from": init_from}
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:24]
    return Path(cache) / f"{digest}.safetensors"


def cached_stage(
    cache: str | Path | None, name: str, pretrain: Recipe, init_from: dict | None
) -> tuple[dict, dict] | None:
    """``(state dict, stage record)`` of a cached first stage, or ``None`` if not cached.

    Raises:
        CorruptCheckpointError: a cached stage whose weights differ from its recorded sha256.
    """
    if cache is None:
        return None
    path = _stage_path(cache, name, pretrain, init_from)
    if not path.exists():
        return None

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    state = load_file(str(path))
    if _state_digest(state) != json.loads(meta["sha256"]):
        raise CorruptCheckpointError(
            f"cached first stage {path} does not match its recorded sha256; delete it"
        )
    return state, json.loads(meta["record"])


def _state_digest(state: dict[str, Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].contiguous().numpy().tobytes())
    return digest.hexdigest()


def store_stage(
    cache: str | Path, name: str, pretrain: Recipe, init_from: dict | None, model, record: dict
) -> None:
    """Cache a finished first stage in float32, atomically, with its record and sha256."""

    state = {
        k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()
    }
    meta = {"record": json.dumps(record), "sha256": json.dumps(_state_digest(state))}
    atomic_write_bytes(_stage_path(cache, name, pretrain, init_from), save(state, metadata=meta))
