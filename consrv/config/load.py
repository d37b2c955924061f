"""Entry points: YAML text or loaded data → `Config`, or `ConfigError`."""

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import pydantic
import yaml

from consrv.config.errors import ConfigError, Problem
from consrv.config.model import Config
from consrv.config.problems import problems_from
from consrv.config.resolve import Resolver
from consrv.config.schema import RawConfig
from consrv.names import (
    safe_repr,
)


def parse_config(data: object, base_dir: Path) -> Config:
    """Validate loaded YAML data. Relative paths resolve against `base_dir`."""
    try:
        raw = RawConfig.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ConfigError(list(problems_from(exc))) from None
    return Resolver(raw, base_dir).config()


def load_config(path: Path) -> Config:
    """Read, parse and validate a config file. Raises ConfigError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(str(path), f"cannot read: {exc.strerror}")], path) from None
    except UnicodeDecodeError as exc:
        problem = Problem(str(path), f"not UTF-8 text (byte {exc.start})")
        raise ConfigError([problem], path) from None
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as exc:
        raise ConfigError([yaml_problem(path, exc)], path) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(str(path), f"YAML error: {exc}")], path) from None
    try:
        return parse_config(data, path.absolute().parent)
    except ConfigError as exc:
        raise ConfigError(exc.problems, path) from None


def yaml_problem(path: Path, exc: yaml.MarkedYAMLError) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    context = f" ({exc.context})" if exc.context else ""
    return Problem(where, f"YAML: {exc.problem}{context}")


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"found the key {safe_repr(str(key))} twice",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
