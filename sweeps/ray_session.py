"""The workload Session inside a Ray Train worker (see workloads/contract.py)."""
from __future__ import annotations

import math
import os
import posixpath
import shutil
import tempfile
from typing import Mapping, Sequence

import pyarrow.fs
import ray.train
import ray.train.torch

from sweeps.keys import DIVERGED
from workloads.kit.loop import warn

# Ray Train names a run's checkpoint folders checkpoint_<YYYY-mm-dd_HH-MM-SS.ffffff>: by name is
# by age (ray/train/v2/_internal/execution/storage.py, make_default_checkpoint_dir_name).
CHECKPOINT_PREFIX = "checkpoint_"


def sanitize_metrics(metrics: Mapping[str, float],
                     objectives: Sequence[tuple[str, str]]) -> dict[str, float]:
    """Floats only; `diverged` always present; a non-finite objective becomes its worst value."""
    clean = {k: float(v) for k, v in metrics.items()}
    clean.setdefault(DIVERGED, 0.0)
    for name, goal in objectives:
        value = clean.get(name, math.nan)
        if not math.isfinite(value):
            clean[name] = math.inf if goal == "minimize" else -math.inf
            clean[DIVERGED] = 1.0
    return clean


def older_checkpoints(filesystem: pyarrow.fs.FileSystem, path: str) -> list[str]:
    """The `checkpoint_*` folders beside `path` in its run's storage folder that are older than
    it, newest first (paths on `filesystem`: local, NFS, S3, GCS alike). Newer ones were never
    registered by Ray Train (a crash mid-upload) and are left out."""
    parent, name = posixpath.split(path.rstrip("/"))
    infos = filesystem.get_file_info(pyarrow.fs.FileSelector(parent, allow_not_found=True))
    names = [i.base_name for i in infos if i.type == pyarrow.fs.FileType.Directory
             and i.base_name.startswith(CHECKPOINT_PREFIX) and i.base_name < name]
    return [posixpath.join(parent, n) for n in sorted(names, reverse=True)]


class CheckpointDirs(Sequence[str]):
    """Checkpoints to resume from, newest first, as local directories, read-only. One on the
    local filesystem is read where it is; one elsewhere (S3, GCS, ...) is copied into a private
    temp dir only when the loop asks for it, and `release()` (called by the loop once it has
    loaded one) removes the copies. `Checkpoint.to_directory()` alone left a
    /tmp/checkpoint_tmp_* copy behind on every restore, local storage included. `label(i)`
    names a checkpoint without copying it."""

    def __init__(self, checkpoints: Sequence[ray.train.Checkpoint]):
        self._checkpoints = list(checkpoints)
        self._local: dict[int, str] = {}
        self._copies: str | None = None  # the private temp dir, made on the first copy

    def __len__(self) -> int:
        return len(self._checkpoints)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        if i not in self._local:
            self._local[i] = self._local_dir(self._checkpoints[i], i)
        return self._local[i]

    def _local_dir(self, checkpoint: ray.train.Checkpoint, i: int) -> str:
        if isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem):
            return checkpoint.path
        if self._copies is None:
            self._copies = tempfile.mkdtemp(prefix="restore_")
        return checkpoint.to_directory(os.path.join(self._copies, str(i)))

    def release(self) -> None:
        """Remove the local copies (a later access copies again)."""
        if self._copies is not None:
            shutil.rmtree(self._copies, ignore_errors=True)
        self._copies = None
        self._local.clear()

    def label(self, i: int) -> str:
        return self._checkpoints[i].path


def restore_candidates(checkpoint: ray.train.Checkpoint | None) -> CheckpointDirs:
    """The checkpoint Ray Train restored, then the older ones kept in the same run folder."""
    if checkpoint is None:
        return CheckpointDirs([])
    try:
        older = older_checkpoints(checkpoint.filesystem, checkpoint.path)
    except Exception as exc:  # noqa: BLE001 — listing is best effort; the latest still loads
        warn(f"cannot list older checkpoints beside {checkpoint.path} "
             f"({type(exc).__name__}: {exc}); only the latest can be resumed from")
        older = []
    fs = checkpoint.filesystem
    return CheckpointDirs([checkpoint] + [ray.train.Checkpoint(p, filesystem=fs) for p in older])


class RaySession:
    """world/rank/device from Ray Train; reports go to Ray Train (and on to Tune).

    A diverged trial reports NaN/inf metrics; the objectives are replaced by their worst value
    (inf when minimizing, -inf when maximizing) so ASHA and Optuna rank it last instead of
    failing on NaN, and `diverged` = 1 tells the tracker why.
    """

    def __init__(self, objectives: Sequence[tuple[str, str]]):
        ctx = ray.train.get_context()
        self.world_size = ctx.get_world_size()
        self.rank = ctx.get_world_rank()
        self.device = ray.train.torch.get_device()
        self.objectives = list(objectives)
        # Newest first: Ray Train's latest checkpoint of this run, then the older ones kept
        # beside it, which the loop falls back to when a newer one does not load.
        self.restored_checkpoint_dirs = restore_candidates(ray.train.get_checkpoint())

    @property
    def restored_checkpoint_dir(self) -> str | None:
        """The latest checkpoint as a local directory (copied from storage on first use)."""
        return self.restored_checkpoint_dirs[0] if self.restored_checkpoint_dirs else None

    def report(self, metrics: Mapping[str, float], checkpoint_dir: str | None = None) -> None:
        clean = sanitize_metrics(metrics, self.objectives)
        checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        ray.train.report(clean, checkpoint=checkpoint)
