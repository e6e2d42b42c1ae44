"""What knobcap finds by name: architectures, devices and engine cores, in one kind of registry.

A name is registered in code (:meth:`Registry.register`), as a reference ``"package.module:attribute"``
imported on first use (:meth:`Registry.register_lazy`: how the built-ins are declared), or by an
installed package through an entry point in the registry's group, NAM-style::

    # the pyproject.toml of a user's package
    [project.entry-points."knobcap.devices"]
    fuzzface = "mypedals.fuzz:FuzzFace"

Groups: ``knobcap.architectures`` (``factory(config) -> ParametricModel``), ``knobcap.devices``
(``factory(**options) -> Device``) and ``knobcap.engine_cores`` (``factory(config, weights, max_block)
-> Core``). Entry points are read the first time a name is looked up or listed, and each is imported
only when its name is asked for. A name registered in code wins over an entry point of the same name.
Every failure is a :class:`RegistryError` with a one-line message that says what to fix.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from importlib import metadata
from typing import Generic, TypeVar

T = TypeVar("T")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
"""A registered name: a letter or digit, then letters, digits, ``_ . + -``."""


class RegistryError(ValueError):
    """A name cannot be registered or found; the message says what to do."""


class Registry(Generic[T]):
    """Names to objects of one kind, with lazy references and entry points.

    ``kind`` names the kind in messages ("device"); ``group`` is the entry-point group; ``fold_case``
    makes names case-insensitive; ``check(name, obj)`` raises :class:`RegistryError` (or a subclass)
    if ``obj`` cannot be registered; ``missing(name, available)`` words the error for an unknown name;
    ``error`` is the class raised (a subclass of :class:`RegistryError`).
    """

    def __init__(self, kind: str, group: str, *, fold_case: bool = False,
                 check: Callable[[str, object], None] | None = None,
                 missing: Callable[[str, list[str]], str] | None = None,
                 error: type[RegistryError] = RegistryError) -> None:
        self.kind = kind
        self.group = group
        self.fold_case = fold_case
        self.error = error
        self._check = check
        self._missing = missing
        self._objects: dict[str, T] = {}
        self._lazy: dict[str, tuple[str, str, str]] = {}  # name -> (reference, where declared, the fix)
        self._entry_points_read = False

    # --- registering ------------------------------------------------------------------------------
    def _key(self, name: object) -> str:
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise self.error(f"{self.kind} names are letters, digits and '_.+-', starting with a letter or "
                             f"digit; got {name!r}.")
        return name.lower() if self.fold_case else name

    def register(self, name: str, obj: T, *, replace: bool = False) -> None:
        """Make ``obj`` available as ``name``; a different object under a taken name needs ``replace``."""
        key = self._key(name)
        self._checked(name, obj)
        if key in self._objects and self._objects[key] is not obj and not replace:
            raise self.error(f"{self.kind} {name!r} is already registered; pick another name or pass "
                             "replace=True.")
        self._objects[key] = obj
        self._lazy.pop(key, None)

    def register_lazy(self, name: str, reference: str) -> None:
        """Make ``"module:attribute"`` available as ``name``, imported the first time it is asked for."""
        key = self._key(name)
        module, sep, attribute = reference.partition(":")
        if not (module and sep and attribute):
            raise self.error(f"{self.kind} {name!r}: the reference {reference!r} must read "
                             "'package.module:attribute'.")
        if key not in self._objects:
            self._lazy[key] = (reference, f"{self.kind} {name!r} ({reference})", "reinstall knobcap")

    def _checked(self, name: str, obj: object, where: str = "") -> None:
        if self._check is None:
            return
        try:
            self._check(name, obj)
        except RegistryError as problem:
            raise self.error(f"{where}: {problem}" if where else str(problem)) from None

    # --- looking up -------------------------------------------------------------------------------
    def _read_entry_points(self) -> None:
        if self._entry_points_read:
            return
        self._entry_points_read = True
        for point in metadata.entry_points(group=self.group):
            try:
                key = self._key(point.name)
            except RegistryError:
                continue  # not a name knobcap can ask for; get() never reaches it
            if key in self._objects or key in self._lazy:
                continue
            dist = getattr(point, "dist", None)
            source = f" from {dist.name}" if dist is not None else ""
            where = f"entry point {point.name} = {point.value} in group {self.group}{source}"
            self._lazy[key] = (point.value, where, "fix or uninstall the package that declares it")

    def names(self) -> list[str]:
        """Every name that can be asked for (registered, lazy or from an entry point), sorted."""
        self._read_entry_points()
        return sorted({*self._objects, *self._lazy})

    def __contains__(self, name: object) -> bool:
        self._read_entry_points()
        key = name.lower() if self.fold_case and isinstance(name, str) else name
        return key in self._objects or key in self._lazy

    def get(self, name: str) -> T:
        """The object registered as ``name`` (importing a lazy one or an entry point now)."""
        self._read_entry_points()
        key = name.lower() if self.fold_case and isinstance(name, str) else name
        if key in self._objects:
            return self._objects[key]  # type: ignore[index]
        if key not in self._lazy:
            available = self.names()
            message = (self._missing(name, available) if self._missing is not None else
                       f"no {self.kind} named {name!r}; available: {', '.join(available) or 'none'}.")
            raise self.error(message)
        reference, where, fix = self._lazy[key]  # type: ignore[index]
        obj = _load(reference, where, fix, self.error)
        self._checked(str(key), obj, where)
        self._objects[key] = obj  # type: ignore[index]
        del self._lazy[key]  # type: ignore[arg-type]
        return obj

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, group={self.group!r})"


def _load(reference: str, where: str, fix: str, error: type[RegistryError]) -> object:
    """Import ``module:attribute.path``; any failure is one line naming ``where`` it was declared."""
    module_name, _, attribute = reference.partition(":")
    try:
        obj: object = importlib.import_module(module_name.strip())
        for part in attribute.strip().split("."):
            obj = getattr(obj, part)
    except Exception as problem:  # an entry point's import can fail in any way; say which one failed
        detail = str(problem).splitlines()[0] if str(problem) else ""
        raise error(f"{where} cannot be loaded ({type(problem).__name__}: {detail}); {fix}.") from None
    return obj


def check_callable(what: str) -> Callable[[str, object], None]:
    """A ``check`` that accepts any callable (a class or a function), naming ``what`` it must build."""

    def check(name: str, obj: object) -> None:
        if not callable(obj):
            raise RegistryError(f"{name!r} must be a class or a function that builds {what}, got {obj!r}.")

    return check
