"""Plain-dict registries filled by a decorator (scenic / DomainBed style)."""
from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from benchmark.errors import UserError

T = TypeVar("T")


def closest(name: str, valid: list[str], n: int = 3) -> list[str]:
  return difflib.get_close_matches(name, valid, n=n, cutoff=0.5)


class Registry(Generic[T]):
  """Maps names to objects. ``kind`` names what is registered, for errors."""

  def __init__(self, kind: str):
    self.kind = kind
    self._items: dict[str, T] = {}

  def register(self, name: str) -> Callable[[T], T]:
    def deco(obj: T) -> T:
      if name in self._items:
        raise ValueError(f"{self.kind} {name!r} registered twice")
      self._items[name] = obj
      return obj
    return deco

  def add(self, name: str, obj: T) -> T:
    return self.register(name)(obj)

  def get(self, name: str) -> T:
    if name not in self._items:
      hint = closest(name, self.names())
      did = f" Did you mean {', '.join(hint)}?" if hint else ""
      raise UserError(
          f"unknown {self.kind} {name!r}.{did} Valid {self.kind}s: "
          f"{', '.join(self.names())}")
    return self._items[name]

  def names(self) -> list[str]:
    return list(self._items)

  def __contains__(self, name: str) -> bool:
    return name in self._items

  def __iter__(self) -> Iterator[str]:
    return iter(self._items)
