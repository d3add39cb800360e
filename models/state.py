"""Durable state documents: a codec that stores objects as JSON under stable type tags, not as pickles of classes.

Why: a pickle names every object by its module and class, so renaming or moving a class in `models/` made every
stored checkpoint unreadable. A document names each object by a tag from a registry (`StateCodec.register`); a
rename changes that one registry line and no stored byte. It is plain JSON (standard: no NaN literals), so a
checkpoint can be read without our code, and reading one never runs code the way unpickling does.

What a document holds (``{"format": FORMAT, "type": <tag of the root>, "state": {...}}``):

- ``None``, ``bool``, ``int``, ``str`` and finite ``float`` as themselves (a float keeps its exact value: JSON
  numbers are written with Python's shortest round-trip repr); ``nan``, ``inf``, ``-inf`` as
  ``{"$float": "nan"}``. Subclasses of these (enum members, NumPy floats) are stored as the plain value.
- ``list`` as a list; ``tuple``, ``set``, ``frozenset``, ``deque`` (with its ``maxlen``), ``Counter``,
  ``defaultdict`` (of a registered factory), ``datetime`` (naive or with a fixed offset), ``timedelta`` and
  ``random.Random`` (its state) as ``{"$tuple": [...]}`` and so on. Sets are written sorted, so that the same
  state gives the same bytes.
- A ``dict`` as a JSON object when its keys are strings not starting with ``$``, else as ``{"$map": [[k, v], ...]}``
  (integer, tuple keys); insertion order is kept either way (some models evict the oldest entry).
- A registered object as ``{"$type": <tag>, <attribute>: <value>, ...}``, attributes sorted by name: its
  ``__dict__`` (or ``__getstate__``, or its slots), or what the registration's ``dump`` hook returns. Registered
  functions (held by a model, e.g. a River ``FuncTransformer``) as ``{"$function": <tag>}``.
- An object reached twice (two attributes holding the same dict) is written once and then as ``{"$ref": n}``, n
  counting the containers and objects in document order: it is shared again after a restore, as with pickle.

Reading a registered object: an attribute the document lacks (written before the attribute existed) takes the
value a default instance has (``new``, or the class called without arguments); a class whose old documents need
more (a renamed attribute, a default that depends on other settings) does it in ``__setstate__``, which is called
with the attributes exactly as pickle calls it. An attribute the class no longer has is set anyway (as pickle
did). An unknown tag, a newer format or a malformed document raises `StateError`.

>>> from collections import deque
>>> codec = StateCodec()
>>> class Point:
...     def __init__(self, x: float = 0.0) -> None:
...         self.x = x
...         self.seen: deque[float] = deque(maxlen=2)
>>> codec.register("point", Point)
>>> p = Point(float("nan"))
>>> p.seen.extend([1.0, 2.5])
>>> data = codec.dumps(p, compress=False)
>>> data.decode()
'{"format":1,"type":"point","state":{"seen":{"$deque":[1.0,2.5],"maxlen":2},"x":{"$float":"nan"}}}'
>>> q = codec.loads(b'{"format":1,"type":"point","state":{"x":3.0}}', Point)  # written before `seen` existed
>>> q.x, q.seen
(3.0, deque([], maxlen=2))
>>> codec.loads(b'{"format":1,"type":"gone","state":{}}')
Traceback (most recent call last):
...
models.state.StateError: unknown type tag 'gone' (known: point)
"""

from __future__ import annotations

import json
import random
import zlib
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any

__all__ = ["FORMAT", "StateCodec", "StateError"]

# Bump when the encoding rules above change (not when a model gains or loses an attribute: that is what the
# defaults and `__setstate__` are for); `StateCodec.decode` then reads both.
FORMAT = 1
# Same bytes for the same state with the same zlib. Level 1: a third of the JSON's size, in an eighth of level 6's
# time for 15% more bytes (a checkpoint is written every 30 s, read once per actor start).
_ZLIB_LEVEL = 1
_FACTORIES: dict[str, Callable[[], Any]] = {"float": float, "int": int, "list": list, "dict": dict, "set": set}
_FACTORY_NAMES = {v: k for k, v in _FACTORIES.items()}


class StateError(ValueError):
    """A document this version cannot read (unknown tag, newer format, malformed), or an object it cannot store."""


@dataclass
class _Kind:
    """One registered class: its tag and how its state is made and read back."""

    tag: str
    cls: type
    new: Callable[[], Any] | None
    dump: Callable[[Any], dict[str, Any]] | None
    load: Callable[[dict[str, Any]], Any] | None
    names: frozenset[str] | None = field(default=None)  # attributes of a default instance, once known

    def default_state(self) -> dict[str, Any]:
        """The attributes of a fresh default instance (fresh: they become the restored object's own)."""
        try:
            obj = self.new() if self.new is not None else self.cls()
        except TypeError:  # needs arguments and was registered without `new`: no defaults to give
            return {}
        return dict(_attributes(obj))


def _attributes(obj: Any) -> dict[str, Any]:
    """What pickle would store of a plain object: its slots (a slotted dataclass's), else ``__getstate__`` when
    the class defines one, else its ``__dict__``."""
    cls = type(obj)
    if not hasattr(obj, "__dict__"):
        slots = (s for c in cls.__mro__ for s in getattr(c, "__slots__", ()))
        return {s: getattr(obj, s) for s in slots if hasattr(obj, s)}
    getstate: object = cls.__getstate__  # a plain object's is object's own
    if getstate is not object.__getstate__:
        state: object = obj.__getstate__()
        if not isinstance(state, dict):
            raise StateError(f"{cls.__qualname__}.__getstate__ returns {type(state).__name__}, not a dict; "
                             "register it with dump/load hooks")
        return state
    attributes: dict[str, Any] = vars(obj)
    return attributes


class StateCodec:
    """Registry of stable tags and the encoder/decoder of state documents (see the module docstring)."""

    def __init__(self) -> None:
        self._by_tag: dict[str, _Kind] = {}
        self._by_type: dict[type, _Kind] = {}
        self._functions: dict[str, Callable[..., Any]] = {}
        self._function_tags: dict[Callable[..., Any], str] = {}

    def register(
        self,
        tag: str,
        cls: type,
        *,
        new: Callable[[], Any] | None = None,
        dump: Callable[[Any], dict[str, Any]] | None = None,
        load: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        """Store `cls` under `tag`. The tag is written into documents: never change it, change `cls`.

        ``new`` makes a default instance when the class needs constructor arguments (its attributes fill those
        an older document lacks). ``dump`` and ``load`` replace the attributes by an explicit state, for a
        class whose attributes are not its state (caches, shared nodes) or are not stable across versions of a
        library; ``load`` receives the decoded state and returns the object.
        """
        if tag in self._by_tag or cls in self._by_type:
            raise ValueError(f"{tag!r} or {cls.__qualname__} is registered already")
        if (dump is None) != (load is None):
            raise ValueError("dump and load go together")
        kind = _Kind(tag, cls, new, dump, load)
        self._by_tag[tag] = kind
        self._by_type[cls] = kind

    def register_function(self, tag: str, fn: Callable[..., Any]) -> None:
        """Store a module-level function that models hold (a River ``FuncTransformer``'s) under `tag`."""
        if tag in self._functions or fn in self._function_tags:
            raise ValueError(f"{tag!r} or {fn!r} is registered already")
        self._functions[tag] = fn
        self._function_tags[fn] = tag

    def tags(self) -> dict[str, type]:
        """Every registered tag and its current class."""
        return {tag: kind.cls for tag, kind in self._by_tag.items()}

    def missing_defaults(self) -> list[str]:
        """Tags whose class gives no default instance (needs arguments, no ``new``, no ``load``): an attribute
        added to such a class would be missing from older documents. For a test to keep this list empty."""
        return [k.tag for k in self._by_tag.values() if k.load is None and not k.default_state()]

    # -- documents ------------------------------------------------------------------------------------

    def encode(self, obj: Any) -> dict[str, Any]:
        """The document of registered object `obj` (JSON-compatible)."""
        root = _Encoder(self).value(obj)
        if not isinstance(root, dict) or "$type" not in root:
            raise StateError(f"the root of a document must be a registered object, not {type(obj).__name__}")
        tag = root.pop("$type")
        return {"format": FORMAT, "type": tag, "state": root}

    def decode(self, doc: Any, expect: type | None = None) -> Any:
        """The object of document `doc`; `StateError` when it is not one this version reads, or not an `expect`."""
        if not isinstance(doc, dict) or not isinstance(doc.get("state"), dict) or not isinstance(doc.get("type"), str):
            raise StateError("not a state document")
        if doc.get("format") != FORMAT:
            raise StateError(f"state format {doc.get('format')!r}; this version reads format {FORMAT}")
        obj = _Decoder(self).value({"$type": doc["type"], **doc["state"]})
        if expect is not None and not isinstance(obj, expect):
            raise StateError(f"document holds a {type(obj).__name__}, not a {expect.__name__}")
        return obj

    def dumps(self, obj: Any, *, compress: bool = True) -> bytes:
        """`encode` as bytes: compact JSON (zlib-compressed unless ``compress=False``); deterministic."""
        text = json.dumps(self.encode(obj), separators=(",", ":"), allow_nan=False, ensure_ascii=False)
        data = text.encode()
        return zlib.compress(data, _ZLIB_LEVEL) if compress else data

    def loads(self, data: bytes, expect: type | None = None) -> Any:
        """The object of `dumps`'s bytes (compressed or not)."""
        if data[:1] != b"{":
            try:
                data = zlib.decompress(data)
            except zlib.error as exc:
                raise StateError(f"not a state document ({exc})") from exc
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise StateError(f"not a state document ({exc})") from exc
        return self.decode(doc, expect)


def _plain_keys(d: dict[Any, Any]) -> bool:
    for k in d:
        if type(k) is not str or k[:1] == "$":
            return False
    return True


class _Encoder:
    """One document's encoding: numbers the containers and objects it writes, to write a shared one once."""

    def __init__(self, codec: StateCodec) -> None:
        self.codec = codec
        self.seen: dict[int, int] = {}  # id(object) -> its number in document order
        self.alive: list[Any] = []  # objects made while encoding (hook states): their ids must not be reused
        self.count = 0

    def _ref(self, obj: Any) -> dict[str, int] | None:
        """``{"$ref": n}`` for an object written before; else number it (in document order) and return None."""
        n = self.seen.get(id(obj))
        if n is not None:
            return {"$ref": n}
        self.seen[id(obj)] = self.count
        self.count += 1
        return None

    def value(self, o: Any) -> Any:  # one dispatch on the type, hottest first
        t = type(o)
        if t is float:
            return o if o - o == 0.0 else {"$float": repr(o)}  # inf - inf and nan - nan are nan
        if t is str or t is int or t is bool or o is None:
            return o
        if t is dict:
            return self._ref(o) or self._dict(o)
        if t is list:
            return self._ref(o) or self._items(o)
        if t is tuple:
            return {"$tuple": self._items(o)}
        if t is datetime:
            if o.tzinfo is not None and not isinstance(o.tzinfo, timezone):
                raise StateError(f"datetime with tzinfo {o.tzinfo!r}: store it in UTC or a fixed offset")
            return {"$datetime": o.isoformat()}
        if t is deque:
            return self._ref(o) or {"$deque": [self.value(v) for v in o], "maxlen": o.maxlen}
        if t is set or t is frozenset:
            ref = self._ref(o) if t is set else None
            return ref or {"$set" if t is set else "$frozenset": self._sorted(o)}
        kind = self.codec._by_type.get(t)
        if kind is not None:
            return self._ref(o) or self._object(kind, o)
        return self._other(o)

    def _sorted(self, items: set[Any] | frozenset[Any]) -> list[Any]:
        """A set's members sorted by their JSON (iteration order depends on the hash seed); objects and
        containers cannot be members: they would be numbered in iteration order, not in document order."""
        before = self.count
        out = sorted((self.value(v) for v in items), key=_sort_key)
        if self.count != before:
            raise StateError("a set of registered objects cannot be stored deterministically; use a list")
        return out

    def _items(self, items: list[Any] | tuple[Any, ...]) -> list[Any]:
        """`value` of each item, with the plain ones (most of a model's numbers) inline: half the time."""
        out: list[Any] = []
        append, value = out.append, self.value
        for v in items:
            t = type(v)
            append(v if (t is float and v - v == 0.0) or t is str or t is int else value(v))
        return out

    def _dict(self, d: dict[Any, Any]) -> dict[str, Any]:
        if _plain_keys(d):
            value = self.value
            return {k: v if (type(v) is float and v - v == 0.0) or type(v) is str else value(v) for k, v in d.items()}
        return {"$map": [[self.value(k), self.value(v)] for k, v in d.items()]}

    def _object(self, kind: _Kind, o: Any) -> dict[str, Any]:
        if kind.dump is not None:
            state = kind.dump(o)
            self.alive.append(state)
        else:
            state = _attributes(o)
        out: dict[str, Any] = {"$type": kind.tag}
        for name in sorted(state):
            if type(name) is not str or name[:1] == "$":
                raise StateError(f"{kind.tag}: attribute name {name!r} cannot be stored")
            out[name] = self.value(state[name])
        return out

    def _other(self, o: Any) -> Any:
        t = type(o)
        if t is Counter:
            return self._ref(o) or {"$counter": self._dict(o)}
        if t is defaultdict:
            factory = _FACTORY_NAMES.get(o.default_factory)
            if factory is None:
                raise StateError(f"defaultdict of {o.default_factory!r}: not a factory a document can name")
            return self._ref(o) or {"$defaultdict": self._dict(o), "factory": factory}
        if t is timedelta:
            return {"$timedelta": [o.days, o.seconds, o.microseconds]}
        if t is random.Random:
            return self._ref(o) or {"$random": self.value(o.getstate())}
        tag = self.codec._function_tags.get(o) if callable(o) else None
        if tag is not None:
            return {"$function": tag}
        if isinstance(o, Enum):
            return self.value(o.value)
        for base in (bool, int, float, str):  # NumPy floats and the like: their plain value
            if isinstance(o, base):
                return self.value(base(o))
        raise StateError(f"no state tag for {t.__module__}.{t.__qualname__}: register it (models/checkpoint.py)")


def _sort_key(encoded: Any) -> str:
    return json.dumps(encoded, sort_keys=True, allow_nan=False)


_SCALARS = frozenset({float, int, str, bool, type(None)})  # JSON values that are themselves


class _Decoder:
    """One document's decoding: numbers containers and objects as `_Encoder` did, to resolve ``$ref``."""

    def __init__(self, codec: StateCodec) -> None:
        self.codec = codec
        self.objects: list[Any] = []

    def _slot(self) -> int:
        self.objects.append(None)
        return len(self.objects) - 1

    def value(self, o: Any) -> Any:
        t = type(o)
        if t is list:
            n = self._slot()
            value = self.value
            out = self.objects[n] = [v if type(v) in _SCALARS else value(v) for v in o]  # scalars inline: faster
            return out
        if t is not dict:
            return o
        for first in o:
            if first[:1] == "$":
                return self._tagged(first, o)
            break
        n = self._slot()
        value = self.value
        mapping = self.objects[n] = {k: v if type(v) in _SCALARS else value(v) for k, v in o.items()}
        return mapping

    def _tagged(self, marker: str, o: dict[str, Any]) -> Any:
        body = o[marker]
        try:
            if marker == "$float":
                return float(body)
            if marker == "$tuple":
                return tuple(self.value(v) for v in body)
            if marker == "$datetime":
                return datetime.fromisoformat(body)
            if marker == "$type":
                return self._object(body, o)
            if marker == "$ref":
                found = self.objects[body]
                if found is None:
                    raise StateError(f"reference {body} to an object not yet read (a cycle)")
                return found
            if marker == "$map":
                n = self._slot()
                out = self.objects[n] = {self.value(k): self.value(v) for k, v in body}
                return out
            if marker == "$deque":
                n = self._slot()
                queue = self.objects[n] = deque((self.value(v) for v in body), maxlen=o["maxlen"])
                return queue
            if marker == "$set":
                n = self._slot()
                members = self.objects[n] = {self.value(v) for v in body}
                return members
            if marker == "$frozenset":
                return frozenset(self.value(v) for v in body)
            if marker == "$counter":
                n = self._slot()
                out = self.objects[n] = Counter(self._inner_map(body))
                return out
            if marker == "$defaultdict":
                n = self._slot()
                out = self.objects[n] = defaultdict(_FACTORIES[o["factory"]], self._inner_map(body))
                return out
            if marker == "$timedelta":
                return timedelta(days=body[0], seconds=body[1], microseconds=body[2])
            if marker == "$random":
                n = self._slot()
                rng = self.objects[n] = random.Random()  # noqa: S311  a model's seeded generator, restored
                rng.setstate(self.value(body))
                return rng
            if marker == "$function":
                return self.codec._functions[body]
        except StateError:
            raise
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise StateError(f"malformed {marker} in the document ({type(exc).__name__}: {exc})") from exc
        raise StateError(f"unknown marker {marker!r} in the document")

    def _inner_map(self, body: Any) -> dict[Any, Any]:
        """The dict written by `_Encoder._dict` (a JSON object or a ``$map``), inside a Counter or defaultdict."""
        if isinstance(body, dict) and "$map" in body:
            return {self.value(k): self.value(v) for k, v in body["$map"]}
        return {k: self.value(v) for k, v in body.items()}

    def _object(self, tag: Any, o: dict[str, Any]) -> Any:
        kind = self.codec._by_tag.get(tag)
        if kind is None:
            known = ", ".join(sorted(self.codec._by_tag))
            raise StateError(f"unknown type tag {tag!r} (known: {known})")
        n = self._slot()
        state = {k: self.value(v) for k, v in o.items() if k != "$type"}
        if kind.load is not None:
            obj = kind.load(state)
        else:
            obj = _restore(kind, state)
        self.objects[n] = obj
        return obj


def _restore(kind: _Kind, state: dict[str, Any]) -> Any:
    """A registered object from its attributes, defaults filling those the document lacks."""
    if kind.names is None:
        kind.names = frozenset(kind.default_state())
    if not kind.names <= state.keys():
        defaults = kind.default_state()
        for name in kind.names - state.keys():
            state[name] = defaults[name]
    cls: Any = kind.cls  # typeshed reads `type.__new__` here, not the registered class's own
    obj = cls.__new__(cls)
    if hasattr(obj, "__dict__"):
        setstate = getattr(cls, "__setstate__", None)
        if setstate is not None:
            setstate(obj, state)  # the class's own migration of older states, as pickle calls it
        else:
            obj.__dict__.update(state)
    else:
        for name, value in state.items():
            object.__setattr__(obj, name, value)
    return obj

