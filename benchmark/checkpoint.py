"""Mid-training checkpoints (orbax), so that a killed component training
resumes at its last finished epoch instead of starting over.

One folder per component, ``WORKDIR/ckpt/<kind>/<key>/``, holding the latest
epoch only: the training state (trainable params, optimiser state, other
state, the best-so-far checkpoint) as an orbax PyTree, and the loop's
bookkeeping (epoch, step, curves, best validation score) as JSON. Orbax writes
into a temporary folder and renames it when complete, so a kill during a save
leaves the previous checkpoint. The folder is removed once the component's
record is in the store.

With several processes of one run (``benchmark.multihost``) process 0 alone
saves, restores and removes (orbax told it is the only process: no barrier a
dead peer could hang), decides when a save is due, and hands the restored
state to the others.

Resuming is exact: the state is restored bit for bit and the epoch
permutations are replayed from the job's seed, so a resumed training ends
with the same parameters and metrics as an uninterrupted one (CPU).
"""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from benchmark import multihost


class TrainCheckpoint:
  """Latest-epoch checkpoint of one training, saved at most every
  ``min_interval_s`` seconds (0: every epoch)."""

  def __init__(self, directory: Path, min_interval_s: float = 60.0):
    self.directory = Path(directory)
    self.min_interval_s = float(min_interval_s)
    self._last_save = time.monotonic()
    self._manager = None

  def _mngr(self):
    if self._manager is None:
      import orbax.checkpoint as ocp  # only trainings that checkpoint pay the import
      # Created here: orbax will not create it for a subset of processes.
      self.directory.mkdir(parents=True, exist_ok=True)
      self._manager = ocp.CheckpointManager(
          self.directory.absolute(),
          options=ocp.CheckpointManagerOptions(
              max_to_keep=1, enable_async_checkpointing=False, create=False,
              cleanup_tmp_directories=True,
              multiprocessing_options=ocp.options.MultiprocessingOptions(
                  primary_host=0, active_processes={0})))
    return self._manager

  @staticmethod
  def _as_dict(leaves: list) -> dict[str, Any]:
    return {f"{i:05d}": leaf for i, leaf in enumerate(leaves)}

  def restore(self, tree: Any) -> tuple[Any, dict] | None:
    """``(tree, meta)`` from the latest checkpoint, with ``tree``'s structure,
    or None when there is none (or it cannot be read: then it is dropped and
    the training starts over, with a warning)."""
    if not multihost.active():
      return self._restore(tree)
    got: list = []
    def meta():
      got.append(self._restore(tree))
      return None if got[0] is None else got[0][1]
    meta_all = multihost.agree(meta)
    if meta_all is None:
      return None
    leaves, treedef = jax.tree.flatten(tree)
    arrays = multihost.agree_arrays(lambda: {
        f"{i:05d}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(got[0][0]))})
    return jax.tree.unflatten(treedef, [arrays[f"{i:05d}"] for i in range(len(leaves))]), meta_all

  def _restore(self, tree: Any) -> tuple[Any, dict] | None:
    if not self.directory.is_dir():
      return None
    import orbax.checkpoint as ocp
    try:
      mngr = self._mngr()
      step = mngr.latest_step()
      if step is None:
        return None
      leaves, treedef = jax.tree.flatten(tree)
      target = self._as_dict([np.zeros(np.shape(x), np.asarray(x).dtype) for x in leaves])
      got = mngr.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
      state, meta = got["state"], dict(got["meta"])
      if sorted(state) != sorted(target):
        raise ValueError("checkpoint holds another structure")
      restored = [np.asarray(state[k]) for k in sorted(target)]
      for a, b in zip(restored, leaves):
        if a.shape != np.shape(b):
          raise ValueError(f"checkpoint shape {a.shape} != {np.shape(b)}")
      return jax.tree.unflatten(treedef, restored), meta
    except Exception as e:  # a foreign or damaged folder: start over
      print(f"warning: cannot resume from {self.directory} ({type(e).__name__}: {e}); "
            f"training from the start", file=sys.stderr)
      self.remove()
      return None

  def due(self) -> bool:
    """Whether to save now: process 0's clock decides for every process."""
    return bool(multihost.agree(
        lambda: time.monotonic() - self._last_save >= self.min_interval_s))

  def saved_epoch(self) -> int | None:
    """The epoch the latest checkpoint was saved after (what a training would
    resume from), or None; read off the folder names, without orbax."""
    return multihost.agree(self._saved_epoch)

  def _saved_epoch(self) -> int | None:
    if not self.directory.is_dir():
      return None
    steps = [int(p.name) for p in self.directory.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(steps) if steps else None

  def save(self, epoch: int, tree: Any, meta: dict) -> None:
    import orbax.checkpoint as ocp

    from benchmark import interrupts
    if not multihost.is_main():
      self._last_save = time.monotonic()
      return
    leaves = [np.asarray(jax.device_get(x)) for x in jax.tree.leaves(tree)]
    # Ctrl-C or SIGTERM during a save waits for it: no half-written folder.
    with interrupts.deferred():
      mngr = self._mngr()
      mngr.save(epoch, args=ocp.args.Composite(
          state=ocp.args.StandardSave(self._as_dict(leaves)), meta=ocp.args.JsonSave(meta)),
          force=True)
      mngr.wait_until_finished()
    self._last_save = time.monotonic()

  def remove(self) -> None:
    if not multihost.is_main():
      return
    if self._manager is not None:
      self._manager.close()
      self._manager = None
    shutil.rmtree(self.directory, ignore_errors=True)
