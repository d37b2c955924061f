"""pydantic's validation errors → `Problem`s that name the key path in the file's terms."""

import difflib
import re
import types
import typing
from collections.abc import Iterator
from typing import Annotated

import pydantic

from consrv.config.errors import Problem
from consrv.config.schema import RawConfig
from consrv.names import (
    safe_repr,
)

_TYPE_MESSAGES = {
    "missing": "required",
    "bool_type": "expected true or false",
    "int_type": "expected an integer",
    "string_type": "expected a string",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
}
_PLAIN_KEY_RE = re.compile(r"[A-Za-z0-9_@*][A-Za-z0-9_.:@*-]{0,63}")


def problems_from(error: pydantic.ValidationError) -> Iterator[Problem]:
    for detail in error.errors(include_url=False):
        loc = tuple(detail["loc"])
        path = _format_loc(loc)
        if detail["type"] == "extra_forbidden":
            yield Problem(path, _unknown_key(loc))
        elif detail["type"] == "string_type" and loc[-1:] == ("[key]",):
            yield Problem(path, "expected a string as the name (quote it in YAML)")
        elif detail["type"] == "greater_than_equal":
            yield Problem(path, f"must be at least {detail.get('ctx', {}).get('ge')}")
        elif detail["type"] == "less_than_equal":
            yield Problem(path, f"must be at most {detail.get('ctx', {}).get('le')}")
        elif detail["type"] == "literal_error":
            yield Problem(path, f"expected {detail.get('ctx', {}).get('expected')}")
        else:
            yield Problem(path, _TYPE_MESSAGES.get(detail["type"], detail["msg"]))


def _format_loc(loc: tuple[int | str, ...]) -> str:
    text, annotation = "", typing.cast(object, RawConfig)
    for segment in loc:
        if segment == "[key]":
            continue
        if isinstance(segment, int) and _origin(annotation) is tuple:
            text += f"[{segment}]"
        elif _PLAIN_KEY_RE.fullmatch(str(segment)):
            text += f".{segment}" if text else str(segment)
        else:
            text += f"[{safe_repr(str(segment))}]"
        annotation = _child(annotation, segment)
    return text or "(top level)"


def _unwrap(annotation: object) -> object:
    """Strip Annotated[...] and `| None` from a field's type."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
        else:
            return annotation


def _origin(annotation: object) -> object:
    return typing.get_origin(_unwrap(annotation))


def _child(annotation: object, segment: int | str) -> object:
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        field = annotation.model_fields.get(str(segment))
        return None if field is None else field.annotation
    args = typing.get_args(annotation)
    if _origin(annotation) is dict:
        return args[1]
    if _origin(annotation) is tuple:
        return args[0]
    return None


def _unknown_key(loc: tuple[int | str, ...]) -> str:
    parent = _unwrap(RawConfig)
    for segment in loc[:-1]:
        parent = _unwrap(_child(parent, segment))
    if not (isinstance(parent, type) and issubclass(parent, pydantic.BaseModel)):
        return "unknown key"
    known = list(parent.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    if close:
        return f"unknown key, did you mean {close[0]!r}?"
    return f"unknown key; known keys here: {', '.join(known)}"
