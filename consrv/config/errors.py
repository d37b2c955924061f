"""Config problems: where (the key path) and what; `ConfigError` carries them all."""

import dataclasses
from collections.abc import Sequence
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem in a config: where (`consoles.my-ioc.socket`) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(Exception):
    """A config that cannot be used. str() lists the problems, one a line."""

    def __init__(self, problems: Sequence[Problem], source: Path | None = None) -> None:
        self.problems = tuple(problems)
        self.source = source
        super().__init__("\n".join(str(problem) for problem in self.problems))
