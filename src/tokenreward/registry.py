"""Name -> object registries, filled by importing every module of a package.

Rewarders, trainers and CLI commands register themselves by name when their module is
imported; `import_submodules` imports a whole package so that a new module (one method =
one file) appears everywhere (CLI, `bench credit`) without editing a central list.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from tokenreward.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A dict of named entries with a clear error for an unknown name."""

    def __init__(self, kind: str, package: str):
        self.kind = kind
        self.package = package
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return decorator

    def register_class(self, name: str) -> Callable[[T], T]:
        """Class decorator: `register(name)`, and set the class's `name` attribute to `name`."""

        def decorator(cls: T) -> T:
            cls.name = name
            return self.register(name)(cls)

        return decorator

    def alias(self, old: str, name: str) -> None:
        """Accept `old` as another spelling of the registered `name`."""
        self._aliases[old] = name

    def canonical(self, name: str) -> str:
        """`name`, or the entry an alias stands for."""
        self._load()
        return self._aliases.get(name, name)

    def aliases(self) -> dict[str, str]:
        self._load()
        return dict(self._aliases)

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            import_submodules(self.package)

    def get(self, name: str) -> T:
        name = self.canonical(name)
        if name not in self._entries:
            known = ", ".join(sorted(self._entries)) or "none"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {known}")
        return self._entries[name]

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        self._load()
        return iter(sorted(self._entries.items()))

    def __contains__(self, name: str) -> bool:
        return self.canonical(name) in self._entries


def import_submodules(package: str) -> None:
    """Import every module of `package` (not recursively), so that registrations run."""
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
