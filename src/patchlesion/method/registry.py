"""One registry idiom for every axis of the method: a name -> entry table with helpful look-ups.

Backbones, input strategies, aggregation heads, attention places, balancing schemes and input
normalisations are each a :class:`Registry`. A new variant is one function or class plus one
registration, as a decorator above it::

    @BACKBONES.register("tiny", n_features=64, min_crop_size=16)
    def _tiny(pretrained): ...

or as a call with a ready entry (``ATTENTIONS.register("end", AttentionPlace("end", end=True))``).
A *family* names entries made on demand from a library's own catalogue: ``timm:<model>`` is any
model of timm (``BACKBONES.register_family("timm", resolve, "timm:<model>")``).
Nothing outside the entry switches on its name: what differs between variants is an attribute or
a method of the entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from patchlesion.errors import PatchlesionError

__all__ = ["Registry", "UnknownChoiceError", "unknown_choice"]

T = TypeVar("T")
_NO_ENTRY = object()


class UnknownChoiceError(PatchlesionError, ValueError):
    """A name that is not in its registry: a user error (config, run name, command line), and a
    ValueError for callers that pass names programmatically."""


def unknown_choice(kind: str, name: object, names: Iterable[str]) -> UnknownChoiceError:
    """The error for ``name`` not among ``names``: says what was asked for and what exists."""
    return UnknownChoiceError(f"unknown {kind} {name!r}; choose one of {', '.join(names)}.")


class Registry(Generic[T]):
    """Named entries of one kind (``kind`` names it in errors: "unknown backbone 'x'; ...").

    ``make(name, obj, **details)`` turns what a decorator is put on into the stored entry (without
    it the object itself is stored). ``registry[name]`` looks an entry up and raises
    :class:`UnknownChoiceError` listing the choices; ``in``, iteration (names, in registration
    order), ``len``, :meth:`check`, :meth:`names`, :meth:`items` and :meth:`values` work as for a dict.
    Names ``<family>:<member>`` are looked up in a family (:meth:`register_family`); iteration lists
    the registered names only.
    """

    def __init__(self, kind: str, make: Callable[..., T] | None = None) -> None:
        self.kind = kind
        self._make = make
        self._entries: dict[str, T] = {}
        self._families: dict[str, tuple[Callable[[str, str], T], str]] = {}
        self._members: dict[str, T] = {}

    def register(self, name: str, entry: Any = _NO_ENTRY, /, **details) -> Any:
        """Add ``entry`` under ``name`` and return it; without ``entry``, a decorator that adds what
        ``make`` builds from the decorated function or class (with ``details``) and returns the
        function or class unchanged. Names may not contain '-' (run names join the axes with it)
        and may not be registered twice."""
        if not name or "-" in name or ":" in name:
            raise ValueError(f"{self.kind} names must be non-empty and without '-' (run names use it) or ':' (families do): {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered already.")
        if entry is not _NO_ENTRY:
            if details:
                raise TypeError("register(name, entry) takes no details; they belong in the entry.")
            self._entries[name] = entry
            return entry

        def decorator(obj):
            self._entries[name] = self._make(name, obj, **details) if self._make else obj
            return obj

        return decorator

    def register_family(self, family: str, resolve: Callable[[str, str], T], pattern: str) -> None:
        """Entries named ``<family>:<member>``, made by ``resolve(name, member)`` when first looked up
        (it raises a :class:`PatchlesionError` for a member that does not exist); ``pattern`` shows
        the family in the list of choices (``timm:<model>``)."""
        if family in self._families or not family.isidentifier():
            raise ValueError(f"{self.kind} family {family!r} is registered already or not a plain word.")
        self._families[family] = (resolve, pattern)

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            pass
        family, _, member = name.partition(":") if isinstance(name, str) else ("", "", "")
        if family in self._families and member:
            if name not in self._members:
                self._members[name] = self._families[family][0](name, member)
            return self._members[name]
        choices = [*self._entries, *(pattern for _, pattern in self._families.values())]
        raise unknown_choice(self.kind, name, choices)

    def check(self, name: str) -> None:
        """Raise :class:`UnknownChoiceError` unless ``name`` is registered."""
        self[name]

    def __contains__(self, name: object) -> bool:
        """Whether ``name`` is registered or a member of a family (looked up, so the family's library
        is imported)."""
        try:
            self[name]
        except UnknownChoiceError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        return list(self._entries)

    def items(self):
        return self._entries.items()

    def values(self):
        return self._entries.values()

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
