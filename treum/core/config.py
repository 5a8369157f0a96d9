"""One validator for every config: models, tasks, the walk-forward, serving (and search spaces later).

A config is a dataclass; pydantic validates a mapping against it (nested
dataclasses, lists, dicts, enums, literals, paths). Unknown keys and wrong
types stop the run before any work, with a message that names the key, what it
expected and, for a misspelling, the closest field:

    model.num_leafs: unknown key for model 'gbm_direction'; did you mean 'num_leaves'?
    eval.refit_every: expected an integer, got 'abc'
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import typing
from collections.abc import Mapping
from typing import Any

import pydantic

from treum.core.errors import ConfigError, did_you_mean

# pydantic error types -> how we say them
_EXPECTED = {
    "int_parsing": "expected an integer",
    "int_type": "expected an integer",
    "int_from_float": "expected an integer",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "dict_type": "expected a mapping",
    "path_type": "expected a path",
    "dataclass_type": "expected a mapping",
    "date_from_datetime_parsing": "expected a date (YYYY-MM-DD)",
    "date_parsing": "expected a date (YYYY-MM-DD)",
}


def _forbid_extra(tp: Any, seen: set) -> None:
    """Mark a dataclass and the dataclasses nested in its fields to refuse unknown keys."""
    for arg in (tp, *typing.get_args(tp)):
        if isinstance(arg, type) and dataclasses.is_dataclass(arg) and arg not in seen:
            seen.add(arg)
            if "__pydantic_config__" not in arg.__dict__:
                arg.__pydantic_config__ = pydantic.ConfigDict(extra="forbid")  # type: ignore[attr-defined]
            for hint in typing.get_type_hints(arg).values():
                _forbid_extra(hint, seen)
        elif typing.get_args(arg):
            for inner in typing.get_args(arg):
                _forbid_extra(inner, seen)


@functools.lru_cache(maxsize=None)
def _adapter(cls: type) -> pydantic.TypeAdapter:
    _forbid_extra(cls, set())
    return pydantic.TypeAdapter(cls)


_TAGS = {"int", "float", "str", "bool", "list", "dict", "tuple", "set", "none", "bytes", "path", "date", "datetime",
         "enum", "literal", "is-instance", "lax-or-strict", "json-or-python", "dataclass-args", "dataclass"}


def _step(tp: Any, part: Any) -> Any:
    """The type one path part leads into: a dataclass field, a dict's value, a list's item; Any if unknown."""
    for arg in (tp, *typing.get_args(tp)):  # Optional[X] and unions: the first member the part fits
        origin = typing.get_origin(arg)
        if isinstance(arg, type) and dataclasses.is_dataclass(arg) and isinstance(part, str):
            hints = typing.get_type_hints(arg)
            if part in hints:
                return hints[part]
        elif origin in (dict, Mapping) and isinstance(part, str):
            args = typing.get_args(arg)
            return args[1] if len(args) == 2 else Any
        elif origin in (list, tuple, set) and isinstance(part, int):
            args = typing.get_args(arg)
            return args[0] if args else Any
    return Any


def _dataclass_of(tp: Any) -> Any:
    for arg in (tp, *typing.get_args(tp)):
        if isinstance(arg, type) and dataclasses.is_dataclass(arg):
            return arg
    return None


def _type_names(cls: type) -> set[str]:
    """Names pydantic may put into an error's path for a union member: the dataclasses reachable from ``cls``."""
    names: set[str] = set()
    todo: list[Any] = [cls]
    seen: set[Any] = set()
    while todo:
        tp = todo.pop()
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            if tp in seen:
                continue
            seen.add(tp)
            names.add(tp.__name__)
            todo.extend(typing.get_type_hints(tp).values())
        else:
            todo.extend(typing.get_args(tp))  # unions, dicts, lists: their members
    return names


def _clean_path(cls: type, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """The error's path in config keys: without the type tags pydantic adds for unions and validators."""
    names = _type_names(cls)
    return tuple(p for p in loc if isinstance(p, int) or not (
        p in _TAGS or p in names or "[" in p or p.startswith("function-")))


def _fields_at(cls: type, path: tuple[Any, ...]) -> list[str]:
    """The field names of the (nested) dataclass that ``path`` leads into (through dicts and lists too)."""
    tp: Any = cls
    for part in path:
        tp = _step(tp, part)
    target = _dataclass_of(tp)
    return [f.name for f in dataclasses.fields(target)] if target is not None else []


def _choices(cls: type, path: tuple[Any, ...]) -> list[str]:
    tp: Any = cls
    for part in path:
        tp = _step(tp, part)
    choices: list[str] = []
    for arg in (tp, *typing.get_args(tp)):
        if typing.get_origin(arg) is typing.Literal:
            choices += [str(a) for a in typing.get_args(arg)]
        if isinstance(arg, type) and issubclass(arg, enum.Enum):
            choices += [str(m.value) for m in arg]
    return choices


def _message(cls: type, error: Mapping[str, Any], where: str, owner: str) -> str:
    path = _clean_path(cls, tuple(error.get("loc", ())))
    key = where + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
    kind = error.get("type", "")
    value = error.get("input")
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        fields = _fields_at(cls, path[:-1])
        known = f" (known keys: {', '.join(fields)})" if fields else ""
        return f"{key}: unknown key for {owner}{did_you_mean(str(path[-1]), fields)}{known}"
    if kind in ("missing", "missing_argument"):
        return f"{key}: missing; give a value"
    if kind in ("literal_error", "enum"):
        choices = _choices(cls, path)
        return f"{key}: must be one of {choices}, got {value!r}{did_you_mean(str(value), choices)}"
    if kind in _EXPECTED:
        return f"{key}: {_EXPECTED[kind]}, got {value!r}"
    text = str(error.get("msg", "invalid value"))
    return f"{key}: {text[0].lower() + text[1:]} (got {value!r})"


def build_config(config_cls: type, values: Mapping[str, Any], where: str = "model", owner: str | None = None) -> Any:
    """Validate ``values`` against the dataclass ``config_cls`` and build it.

    ``where`` is the key prefix in messages (``model``, ``task``, ``eval``, ``serve``);
    ``owner`` names what the config belongs to (``model 'garch'``). A ``name`` key,
    when ``owner``'s name is given as ``config_cls.__treum_name__`` or not at all, is
    the choice of the config group and is not a field.
    Cross-field checks live in the dataclass's ``validate()``, which returns a problem or None.
    """
    owner = owner or where
    values = dict(values)
    values.pop("name", None)
    try:
        config = _adapter(config_cls).validate_python(values)
    except pydantic.ValidationError as exc:
        problems = [_message(config_cls, e, where, owner) for e in exc.errors()]
        raise ConfigError("; ".join(dict.fromkeys(problems))) from None
    check = getattr(config, "validate", None)
    if check is not None:
        problem = check()
        if problem:
            raise ConfigError(f"{where}: {problem}")
    return config


def build_spec_config(spec: Any, values: Mapping[str, Any], where: str = "model") -> Any:
    """A plugin spec's config (model or task): ``values['name']``, if any, must be the spec's name."""
    name = values.get("name")
    if name is not None and name != spec.name:
        raise ConfigError(f"{where}.name is '{name}' but the config belongs to '{spec.name}'")
    noun = where.split(".")[0]
    return build_config(spec.config_cls, values, where, f"{noun} '{spec.name}'")


def config_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as plain JSON-able data (paths and enums as strings)."""
    # the cached adapter: building one generates a schema (about a millisecond), and serving logs a task's
    # config with every ensemble answer
    return _adapter(type(config)).dump_python(config, mode="json")
