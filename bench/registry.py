"""One small generic registry: the name is the key, with did-you-mean errors (timm / lm-eval style)."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from bench.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names (and aliases) to objects. Entries may be lazy "module:attr" strings."""

    def __init__(
        self, kind: str, suggest: Callable[[str, list[str]], str | None] | None = None
    ) -> None:
        """`suggest(name, known)` replaces the plain closest-spelling guess of the error message
        (e.g. tasks: never a sibling task that predicts another attribute)."""
        self.kind = kind
        self._suggest = suggest
        self._entries: dict[str, T | str] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, obj: T | str | None = None, *, aliases: tuple[str, ...] = ()):
        """Register `obj` under `name`; without `obj`, acts as a decorator."""

        def add(target: T | str) -> T | str:
            for key in (name, *aliases):
                if key in self._entries or key in self._aliases:
                    raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._entries[name] = target
            for alias in aliases:
                self._aliases[alias] = name
            return target

        return add(obj) if obj is not None else add

    def unregister(self, name: str) -> None:
        """Remove `name` (or the entry an alias names) and its aliases, e.g. after a test."""
        key = self.canonical(name)
        del self._entries[key]
        for alias in [a for a, target in self._aliases.items() if target == key]:
            del self._aliases[alias]

    def canonical(self, name: str) -> str:
        """The registered name for `name` or one of its aliases; a did-you-mean error otherwise."""
        key = name.strip().lower()
        if key in self._entries:
            return key
        if key in self._aliases:
            return self._aliases[key]
        raise UserError(self._unknown_message(name))

    def get(self, name: str) -> T:
        key = self.canonical(name)
        entry = self._entries[key]
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            entry = getattr(importlib.import_module(module), attr)
            self._entries[key] = entry
        return entry  # type: ignore[return-value]

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: str) -> bool:
        key = name.strip().lower()
        return key in self._entries or key in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        for name in self._entries:
            yield name, self.get(name)

    def _unknown_message(self, name: str) -> str:
        known = sorted([*self._entries, *self._aliases])
        if self._suggest is not None:
            guess = self._suggest(name, known)
        else:
            close = difflib.get_close_matches(name.lower(), known, n=1, cutoff=0.6)
            guess = close[0] if close else None
        hint = f" Did you mean {guess!r}?" if guess else ""
        return f"unknown {self.kind} {name!r}.{hint} Valid: {', '.join(sorted(self._entries))}"
