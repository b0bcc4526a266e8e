"""Ctrl-C and SIGTERM as one exception, ``Interrupted``, that the command line
reports in one line (exit 130 or 143), and ``deferred()`` for the writes a
signal must not cut in half (a checkpoint save).

Unwinding from ``Interrupted`` runs every ``with`` and ``finally`` on the way
(claims released, temporary files removed); a second signal while that runs
is ignored, so that the cleanup finishes. Imports nothing heavy: the handlers
are installed before JAX is.
"""
from __future__ import annotations

import contextlib
import signal
import sys

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
  """SIGINT or SIGTERM arrived; ``exit_code`` is 128 + the signal number."""

  def __init__(self, signum: int):
    super().__init__(signal.Signals(signum).name)
    self.signum = int(signum)

  @property
  def exit_code(self) -> int:
    return 128 + self.signum


_state = {"armed": False, "deferring": 0, "pending": None, "raised": False,
          "early_message": ""}


def _handler(signum, frame) -> None:
  del frame
  if _state["raised"]:
    return  # already unwinding (or done): let the cleanup finish
  if not _state["armed"]:
    # Before the work starts (imports, flag parsing): nothing to save.
    _state["raised"] = True
    if _state["early_message"]:
      print(_state["early_message"], file=sys.stderr, flush=True)
    raise SystemExit(128 + int(signum))
  if _state["deferring"]:
    _state["pending"] = signum
    return
  _state["raised"] = True
  raise Interrupted(signum)


def install(early_message: str = "") -> None:
  """Handlers for SIGINT and SIGTERM (main thread only). Until ``arm()`` a
  signal prints ``early_message`` and exits quietly; after it, it raises
  ``Interrupted`` where the main thread is."""
  _state.update(armed=False, deferring=0, pending=None, raised=False,
                early_message=early_message)
  for s in SIGNALS:
    signal.signal(s, _handler)


def arm() -> None:
  _state["armed"] = True


def disarm() -> None:
  """From here on signals are ignored (the work is done; exiting)."""
  _state["raised"] = True


@contextlib.contextmanager
def deferred():
  """A signal arriving inside is raised when the block ends, not in it."""
  _state["deferring"] += 1
  try:
    yield
  finally:
    _state["deferring"] -= 1
    pending = _state["pending"]
    if not _state["deferring"] and pending is not None and not _state["raised"]:
      _state["pending"] = None
      _state["raised"] = True
      raise Interrupted(pending)
