"""The zoo's training queue: every entry of :data:`vitlens.models.zoo.ZOO_PLAN` not done yet,
trained by worker processes of one thread each, each result committed as it lands.

Each queue entry runs as its own ``vitlens zoo train`` (or ``zoo sweep-run``) process, so a
model interrupted mid-way leaves nothing in the manifest and is simply trained again the next
time the queue runs. The queue re-reads what is pending from a fresh process each time a
worker is free, so a plan changed while it runs is picked up without restarting it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from vitlens.models.zoo import (
    SEED_TAG,
    ZOO_PLAN,
    ZOO_SWEEPS,
    read_manifest,
    split_zoo_key,
    zoo_dir,
)
from vitlens.training.checkpoints import remove_manifest_entry

SWEEP_PREFIX = "sweep:"
"""The prefix of a queue entry that names a sweep run, ``"sweep:SWEEP/LABEL"``
(:data:`vitlens.models.zoo.ZOO_SWEEPS`)."""


@dataclass(frozen=True)
class QueueEntry:
    """One entry of the plan: a zoo model's seed or one sweep run.

    Attributes:
        key: the plan's text, e.g. ``"vit-pt.seed1"`` or ``"sweep:vit-pt-gap-lr/lr2e-3"``.
    """

    key: str

    @property
    def sweep(self) -> tuple[str, str] | None:
        """``(sweep, label)`` of a sweep run, ``None`` for a zoo model."""
        if not self.key.startswith(SWEEP_PREFIX):
            return None
        sweep, _, label = self.key[len(SWEEP_PREFIX) :].partition("/")
        return sweep, label

    def command(self, zoo: Path, pretrain_cache: Path | None) -> list[str]:
        """The ``vitlens`` command line that trains this entry on one thread."""
        cache = ["--pretrain-cache", str(pretrain_cache)] if pretrain_cache else []
        base = [sys.executable, "-m", "vitlens", "zoo", "--zoo", str(zoo)]
        if self.sweep is not None:
            return [*base, "sweep-run", *self.sweep, "--threads", "1", *cache]
        # split by text, not by this process's registry: the plan is read from the code on
        # disk, which may register models this (long-running) process never imported
        name, tag, seed = self.key.partition(SEED_TAG)
        seeds = ["--seed", seed] if tag else []  # untagged: the recipe's own seed
        return [*base, "train", name, *seeds, "--threads", "1", *cache]

    def outputs(self, zoo: Path) -> list[Path]:
        """The files this entry writes into the zoo folder (what is committed)."""
        if self.sweep is not None:
            return [zoo / "sweeps" / f"{self.sweep[0]}.json"]
        return [zoo / f"{self.key}.safetensors", zoo / "manifest.json"]


def check_plan(plan: tuple[str, ...] = ZOO_PLAN) -> list[QueueEntry]:
    """The plan's entries, each checked to name a zoo model or a sweep run.

    Raises:
        ValueError: an entry that is neither, or one listed twice.
    """
    if len(set(plan)) != len(plan):
        raise ValueError(f"the zoo plan lists entries twice: {sorted(plan)}")
    entries = [QueueEntry(key) for key in plan]
    for entry in entries:
        if entry.sweep is None:
            split_zoo_key(entry.key)
        elif entry.sweep[0] not in ZOO_SWEEPS or entry.sweep[1] not in ZOO_SWEEPS[entry.sweep[0]]:
            raise ValueError(f"the zoo plan names an unknown sweep run {entry.key!r}")
    return entries


def pending_entries(zoo: str | Path | None = None, plan: tuple[str, ...] = ZOO_PLAN) -> list[str]:
    """The plan's entries not yet in the zoo folder's manifest or sweep records, in order."""
    zoo = Path(zoo or zoo_dir())
    manifest = read_manifest(zoo)
    pending = []
    for entry in check_plan(plan):
        if entry.sweep is None:
            done = entry.key in manifest
        else:
            path = zoo / "sweeps" / f"{entry.sweep[0]}.json"
            done = path.exists() and entry.sweep[1] in json.loads(path.read_text())
        if not done:
            pending.append(entry.key)
    return pending


def remove_leftovers(zoo: Path) -> list[Path]:
    """Delete what a killed training left in ``zoo``: pending checkpoints, temp files and
    manifest entries that still name a pending checkpoint. Returns the files removed.

    Call it only while no training writes into ``zoo`` (the queue holds its lock).
    """
    manifest = read_manifest(zoo)
    for key, entry in manifest.items():
        if ".pending." in entry["file"]:
            remove_manifest_entry(zoo, key)
    leftovers = [
        *zoo.glob("*.pending.safetensors"),
        *zoo.glob(".*.tmp"),
        *zoo.glob("sweeps/.*.tmp"),
    ]
    for path in leftovers:
        path.unlink()
    return leftovers


def commit_files(repo: Path, files: list[Path], message: str, log) -> None:
    """Commit ``files`` alone (other staged changes stay staged); retries a busy index."""
    paths = [str(p.relative_to(repo)) for p in files if p.exists()]
    for attempt in range(30):
        add = subprocess.run(["git", "-C", str(repo), "add", "--", *paths], capture_output=True)
        commit = subprocess.run(
            ["git", "-C", str(repo), "commit", "-q", "-m", message, "--", *paths],
            capture_output=True,
            text=True,
        )
        if add.returncode == 0 and commit.returncode == 0:
            log(f"committed: {message}")
            return
        if "index.lock" not in (commit.stderr + add.stderr.decode()):
            log(f"commit failed ({commit.stderr.strip()}); files left uncommitted: {paths}")
            return
        time.sleep(2 + attempt)
    log(f"commit gave up (index busy); files left uncommitted: {paths}")


def _landed(entry: QueueEntry, zoo: Path) -> dict:
    """What ``entry`` wrote: its manifest entry, or its sweep run's record."""
    if entry.sweep is not None:
        record = json.loads((zoo / "sweeps" / f"{entry.sweep[0]}.json").read_text())
        return record[entry.sweep[1]]
    return read_manifest(zoo)[entry.key]


def landing_summary(result: dict) -> str:
    """One line for the commit message of a landed model or sweep run: held-out accuracy,
    local heads per block, CPU minutes.

    Args:
        result: its manifest entry (or sweep record). Its ``train_cpu_s`` is the whole
            run's CPU time, a first stage trained in the same run included (a first stage
            reused from the cache cost this run nothing).
    """
    parts = [f"held-out {100 * result['heldout']['accuracy']:.1f} %"]
    if "attention" in result:
        parts.append(f"local heads per block {result['attention']['local_heads_per_block']}")
    parts.append(f"{result.get('train_cpu_s', 0) / 60:.0f} CPU-min")
    return ", ".join(parts)


def run_queue(
    zoo: str | Path | None = None,
    *,
    workers: int = 2,
    commit: bool = False,
    pretrain_cache: str | Path | None = None,
    log_dir: str | Path | None = None,
    plan: tuple[str, ...] | None = None,
    poll_s: float = 10.0,
    nice: int = 10,
) -> dict[str, int]:
    """Train every pending plan entry, ``workers`` processes at a time, one thread each.

    Args:
        zoo: the zoo folder trained into (the shipped one if ``None``).
        workers: processes side by side.
        commit: after each entry lands, commit its files (checkpoint and manifest, or the
            sweep record) in the git repository holding ``zoo``, and nothing else.
        pretrain_cache: folder of finished first stages shared by the runs
            (:func:`vitlens.training.zoo.train_zoo_model`).
        log_dir: one log file per entry (default: ``zoo/../../logs/zoo-queue``).
        plan: the entries, in order; ``None``: :data:`vitlens.models.zoo.ZOO_PLAN` as the
            code on disk has it each time a worker is free.
        poll_s: seconds between checks on the running processes.
        nice: added to each worker's niceness (POSIX), so the trainings yield the CPU to
            interactive work; 0 runs them at the caller's priority.

    Returns:
        ``{entry: exit status}`` of every entry run, 0 for one that landed. An entry that
        fails is not retried by this call; its log says why.

    Raises:
        RuntimeError: another queue already trains into ``zoo``.
    """
    import fcntl

    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if not 0 <= nice <= 19:
        raise ValueError(f"nice must be an integer in [0, 19], got {nice}")
    zoo = Path(zoo or zoo_dir()).resolve()
    logs = Path(log_dir or zoo.parent.parent / "logs" / "zoo-queue")
    logs.mkdir(parents=True, exist_ok=True)
    lock = open(zoo / ".queue.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RuntimeError(f"another zoo queue is already training into {zoo}") from None

    def log(text: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}"
        print(line, flush=True)

    for path in remove_leftovers(zoo):
        log(f"removed leftover {path.name}")
    repo = Path(
        subprocess.run(
            ["git", "-C", str(zoo), "rev-parse", "--show-toplevel"], capture_output=True, text=True
        ).stdout.strip()
        or zoo
    )
    package_root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(package_root)}
    running: dict[str, tuple[subprocess.Popen, object]] = {}
    results: dict[str, int] = {}
    while True:
        if len(running) < workers:
            todo = [
                k
                for k in _pending_from_fresh_process(zoo, env, plan)
                if k not in running and k not in results
            ]
            for key in todo[: workers - len(running)]:
                entry = QueueEntry(key)
                out = open(logs / f"{key.replace('/', '_').replace(':', '_')}.log", "w")
                proc = subprocess.Popen(
                    entry.command(zoo, Path(pretrain_cache) if pretrain_cache else None),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=package_root,
                    preexec_fn=lambda: os.nice(nice),
                )
                running[key] = (proc, out)
                log(f"started {key} (pid {proc.pid})")
        if not running:
            break
        time.sleep(poll_s)
        for key, (proc, out) in list(running.items()):
            if proc.poll() is None:
                continue
            out.close()
            del running[key]
            results[key] = proc.returncode
            if proc.returncode != 0:
                log(f"FAILED {key} (exit {proc.returncode}); see {out.name}")
                continue
            entry = QueueEntry(key)
            summary = landing_summary(_landed(entry, zoo))
            log(f"landed {key}: {summary}")
            if commit:
                what = "sweep run" if entry.sweep else "trained"
                commit_files(repo, entry.outputs(zoo), f"Zoo v2: {key} {what} ({summary})", log)
    lock.close()
    return results


def _pending_from_fresh_process(zoo: Path, env: dict, plan: tuple[str, ...] | None) -> list[str]:
    """The pending entries as the code on disk now sees them (a plan edited meanwhile counts)."""
    code = (
        "import json, sys; from vitlens.training.queue import pending_entries; "
        "from vitlens.models.zoo import ZOO_PLAN; plan = json.loads(sys.argv[2]); "
        "print(json.dumps(pending_entries(sys.argv[1], tuple(plan or ZOO_PLAN))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(zoo), json.dumps(plan)],
        capture_output=True,
        text=True,
        env=env,
    )
    if out.returncode != 0:
        raise RuntimeError(f"could not read the pending zoo entries: {out.stderr.strip()}")
    return json.loads(out.stdout)
