"""Seconds this process spent making compiled programs: JAX's tracing,
lowering to MLIR and backend compilation (or reading the program from the
persistent compilation cache), summed from ``jax.monitoring``'s duration
events. The trainer records the difference over a training as
``timings.compile_s``, so a sweep's compile cost is read off its store."""
from __future__ import annotations

import threading

from jax import monitoring

# The events of one compilation, each a stage that a warm persistent cache
# leaves in place except the last (which then reads the cached program).
EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
          "/jax/core/compile/jaxpr_to_mlir_module_duration",
          "/jax/core/compile/backend_compile_duration")

_lock = threading.Lock()
_total = {"s": 0.0}
_installed = False


def _listener(event: str, duration: float, **_) -> None:
  if event in EVENTS:
    with _lock:
      _total["s"] += float(duration)


def seconds() -> float:
  """The process's compile seconds so far (listening from the first call)."""
  global _installed
  with _lock:
    if not _installed:
      monitoring.register_event_duration_secs_listener(_listener)
      _installed = True
    return _total["s"]
