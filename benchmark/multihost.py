"""Several processes as one run (``jax.distributed``): start-up from the
launcher's environment, process 0's decisions and arrays handed to the others,
and a watchdog that stops every process when one of them dies.

Every process runs the same components in lock-step (a sharded step needs all
of them); only process 0 touches the run store, the claims, the checkpoints
and the terminal. Whatever depends on those (is a record stored? is a claim
ours? is a checkpoint due?) process 0 decides and ``agree`` hands its answer
to the others; arrays they need from the store come from process 0 through
``agree_arrays``, never from files another process may not have written yet
(on several hosts the workdir need not even be shared).

Start-up: the three variables ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``
and ``JAX_PROCESS_ID`` are passed to ``jax.distributed.initialize`` as they
are; without them a launcher that starts several processes (``srun`` with
more than one task, Open MPI's ``mpirun``, a multi-host Cloud TPU slice, or
any other with ``LEVI_DISTRIBUTED=1``, e.g. a Kubernetes JobSet) is left to
jax's own detection. One process (a job of ``--launcher slurm``) initialises
nothing.

Faults: each process bumps a counter in the coordinator's key-value store
every ``timeout_s / 10`` seconds; a peer whose counter has not moved for
``timeout_s``, or that has ended with an error, stops the others within that
bound with one ``error:`` line naming the process (exit status 3), instead of
a hang in a collective. Process 0 hosts the coordinator: when it dies, jax's
coordination service aborts the others at once itself (exit status 134, with
its own fatal log; its handler cannot be replaced from Python in jax 0.10.2).
Nothing is lost: the same command resumes from the store and checkpoints.
"""
from __future__ import annotations

import atexit
import json
import os
import sys
import threading
import time
from typing import Any, Callable

import numpy as np

DEFAULT_TIMEOUT_S = 30.0
EXIT_PEER_LOST = 3
_PREFIX = "levi"

_state: dict[str, Any] = {"on": False, "client": None, "seq": 0, "timeout_s": DEFAULT_TIMEOUT_S,
                          "index": 0, "count": 1, "stop": None, "failing": False}


class PeerFailed(RuntimeError):
  """Process 0 raised while deciding for every process: the others stop too."""


def launcher_wants_processes(env=os.environ) -> str | None:
  """The launcher that started several processes of this run, or None (one
  process: nothing to initialise, e.g. one task of a SLURM job array)."""
  def more_than_one(name):
    try:
      return int(env.get(name, "1").split("(")[0]) > 1
    except ValueError:
      return False
  if env.get("JAX_COORDINATOR_ADDRESS"):
    return "JAX_COORDINATOR_ADDRESS"
  if env.get("LEVI_DISTRIBUTED", "") not in ("", "0"):
    return "LEVI_DISTRIBUTED"
  if env.get("SLURM_JOB_ID") and more_than_one("SLURM_NTASKS"):
    return "SLURM"
  if more_than_one("OMPI_COMM_WORLD_SIZE"):
    return "Open MPI"
  if "," in env.get("TPU_WORKER_HOSTNAMES", ""):
    return "Cloud TPU"
  return None


def initialize(timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
  """Joins the other processes of this run, when a launcher started several
  (see the module docstring); True when it did. ``timeout_s`` bounds how long
  a dead peer goes unnoticed."""
  import jax
  from benchmark.errors import UserError
  if _state["on"]:
    return True
  how = launcher_wants_processes()
  if how is None:
    return False
  if timeout_s <= 0:
    raise UserError(f"--distributed_timeout_s {timeout_s:g} must be positive, e.g. 30")
  # CPU collectives across processes (the CI test, a CPU cluster); accelerators
  # use their own.
  if not os.environ.get("JAX_CPU_COLLECTIVES_IMPLEMENTATION"):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  kw: dict[str, Any] = {}
  if how == "JAX_COORDINATOR_ADDRESS":
    try:
      kw = dict(coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
                num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
                process_id=int(os.environ["JAX_PROCESS_ID"]))
    except (KeyError, ValueError):
      raise UserError("JAX_COORDINATOR_ADDRESS is set: set JAX_NUM_PROCESSES (how many "
                      "processes) and JAX_PROCESS_ID (0 to N-1, this one) too, as "
                      "integers") from None
    if not 0 <= kw["process_id"] < kw["num_processes"]:
      raise UserError(f"JAX_PROCESS_ID {kw['process_id']} must be in 0..."
                      f"{kw['num_processes'] - 1} (JAX_NUM_PROCESSES {kw['num_processes']})")
  # jax's own heartbeat notices a dead peer later than the watchdog (which
  # says so in one line): its fatal log is then never reached.
  jax.distributed.initialize(**kw, initialization_timeout=int(max(60, 4 * timeout_s)),
                             heartbeat_timeout_seconds=int(3 * timeout_s + 30))
  from jax._src import distributed
  _state.update(on=True, client=distributed.global_state.client, timeout_s=float(timeout_s),
                index=jax.process_index(), count=jax.process_count())
  if _state["index"] != 0:
    sys.stdout = open(os.devnull, "w")  # the table and reports are process 0's
  _start_watchdog()
  atexit.register(_mark_done, 0)
  return True


def active() -> bool:
  return _state["on"]


def is_main() -> bool:
  return _state["index"] == 0


# -- process 0 decides, every process gets the answer ---------------------------
def _key(name: str) -> str:
  return f"{_PREFIX}/{name}"


def _get(key: str) -> str:
  """Blocks until ``key`` is set (a decision may wait on another shard's
  claim for hours); the watchdog ends the wait if a peer dies."""
  client = _state["client"]
  while True:
    try:
      return client.blocking_key_value_get(key, 60_000)
    except Exception as e:  # a timeout: ask again; anything else is a real error
      if "DEADLINE_EXCEEDED" not in str(e) and "timed out" not in str(e).lower():
        raise


def agree(decide: Callable[[], Any]) -> Any:
  """``decide()`` run on process 0 (it may read the store, claim, wait) and
  its JSON-able answer returned on every process; plain ``decide()`` with one
  process. An exception on process 0 is raised on the others too."""
  if not _state["on"]:
    return decide()
  _state["seq"] += 1
  key = _key(f"agree/{_state['seq']}")
  if is_main():
    try:
      value = decide()
    except BaseException as e:
      _state["client"].key_value_set(key, json.dumps({"error": f"{type(e).__name__}: {e}"}))
      raise
    _state["client"].key_value_set(key, json.dumps({"value": value}))
    return value
  got = json.loads(_get(key))
  if "error" in got:
    raise PeerFailed(f"process 0 failed: {got['error']}")
  return got["value"]


def agree_arrays(read: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  """Named arrays that process 0 gets with ``read()`` (e.g. from the store),
  on every process, bit for bit: their shapes and dtypes through ``agree``,
  their bytes in one broadcast over the devices."""
  if not _state["on"]:
    return read()
  import jax.numpy as jnp
  from jax.experimental import multihost_utils
  arrays = None
  def describe():
    nonlocal arrays
    arrays = {k: np.ascontiguousarray(v) for k, v in read().items()}
    return [[k, list(v.shape), v.dtype.name] for k, v in arrays.items()]
  meta = agree(describe)
  dtypes = [jnp.dtype(d) for _, _, d in meta]
  sizes = [int(np.prod(s, dtype=np.int64)) * dt.itemsize for (_, s, _), dt in zip(meta, dtypes)]
  total = sum(sizes)
  if total == 0:
    flat = np.zeros(0, np.uint8)
  else:
    # Bytes, not values: a sum with zeros would turn -0.0 into 0.0.
    local = (np.concatenate([arrays[k].view(np.uint8).reshape(-1) for k, _, _ in meta])
             if is_main() else np.zeros(total, np.uint8))
    flat = np.asarray(multihost_utils.broadcast_one_to_all(local))
  out, at = {}, 0
  for (k, shape, _), dt, n in zip(meta, dtypes, sizes):
    out[k] = flat[at:at + n].copy().view(dt).reshape(shape)
    at += n
  return out


# -- the watchdog -----------------------------------------------------------------
def _exit_lost(message: str) -> None:
  """One line, then out at once: a collective a dead peer never joins would
  otherwise hang (and Python's shutdown could wait on it too)."""
  if _state["failing"]:
    return
  _state["failing"] = True
  try:
    from benchmark import locks
    locks.release_all_held()  # our claims: the rerun needs none broken
    _state["client"].key_value_set(_key(f"done/{_state['index']}"), "lost",
                                   allow_overwrite=True)
  except Exception:
    pass
  sys.stderr.write(f"error: {message}; stopping process {_state['index']} too. Rerun the "
                   f"same command on every process to resume from the store\n")
  sys.stderr.flush()
  os._exit(EXIT_PEER_LOST)


def _start_watchdog() -> None:
  client, me, n = _state["client"], _state["index"], _state["count"]
  timeout = _state["timeout_s"]
  every = max(0.2, min(2.0, timeout / 10))
  stop = threading.Event()
  _state["stop"] = stop

  def watch():
    beats = 0
    seen = {i: (None, time.monotonic()) for i in range(n) if i != me}
    coordinator_ok = time.monotonic()
    while not stop.wait(every):
      beats += 1
      now = time.monotonic()
      try:
        client.key_value_set(_key(f"alive/{me}"), str(beats), allow_overwrite=True)
        # Two calls whatever the process count (not two per peer).
        beat_of = _by_process(client.key_value_dir_get(_key("alive")))
        done_of = _by_process(client.key_value_dir_get(_key("done")))
        for i, (last, since) in list(seen.items()):
          done = done_of.get(i)
          if done is not None:
            if done != "0":
              _exit_lost(f"process {i} of {n} stopped with exit status {done}")
            del seen[i]  # finished: no more heartbeats to expect
            continue
          beat = beat_of.get(i)
          if beat != last:
            seen[i] = (beat, now)
          elif now - since > timeout:
            _exit_lost(f"process {i} of {n} stopped responding for {now - since:.0f} s "
                       f"(killed, crashed or unreachable)")
        coordinator_ok = now
      except Exception:
        if now - coordinator_ok > timeout:
          _exit_lost(f"process 0 of {n} (the coordinator, "
                     f"{os.environ.get('JAX_COORDINATOR_ADDRESS', 'auto-detected')}) cannot be "
                     f"reached for {now - coordinator_ok:.0f} s (killed, crashed or unreachable)")

  threading.Thread(target=watch, name="levi-watchdog", daemon=True).start()


def _by_process(entries) -> dict[int, str]:
  """``key_value_dir_get``'s ``[(".../<process>", value)]`` by process index."""
  out = {}
  for key, value in entries:
    tail = key.rsplit("/", 1)[-1]
    if tail.isdigit():
      out[int(tail)] = value
  return out


def _try_get(client, name: str) -> str | None:
  """``name``'s value, or None while it is not set (NOT_FOUND)."""
  try:
    return client.key_value_try_get(_key(name))
  except Exception as e:
    if "NOT_FOUND" in str(e) or "not found" in str(e).lower():
      return None
    raise


def _mark_done(status: int) -> None:
  if not _state["on"] or _state["failing"]:
    return
  if _state["stop"] is not None:
    _state["stop"].set()
  try:
    _state["client"].key_value_set(_key(f"done/{_state['index']}"), str(status),
                                   allow_overwrite=True)
  except Exception:
    pass


def finish(status: int) -> None:
  """Says how this process ends (0: fine), so that the others neither wait
  for its heartbeat nor go on without it after an error."""
  _mark_done(status)
  if status != 0 and _state["on"]:
    # Peers are told through the store above; wait (a bounded while) for
    # them to have read it, since the coordinator lives in process 0, then
    # skip jax's shutdown barrier, which they would not join.
    deadline = time.monotonic() + 3 * max(0.2, min(2.0, _state["timeout_s"] / 10)) + 1
    others = [i for i in range(_state["count"]) if i != _state["index"]]
    while others and time.monotonic() < deadline:
      try:
        others = [i for i in others if _try_get(_state["client"], f"done/{i}") is None]
      except Exception:
        break
      time.sleep(0.1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def wait_for_watchdog() -> None:
  """After an error in a collective (a peer gone mid-step): give the watchdog
  its bound to say which process died and exit, before a traceback would."""
  if _state["on"]:
    time.sleep(_state["timeout_s"] + 2 * max(0.2, min(2.0, _state["timeout_s"] / 10)) + 1)
