"""Environment files: systemd's EnvironmentFile= syntax and its `$VAR` word splitting.

Two layers, as `systemd/ioc@.service` uses them (checked against systemd 252):

1. the file: `KEY=VALUE` lines, read by `EnvironmentFile=` (man systemd.exec).
   `format_env_file` writes a value unquoted when that is unambiguous, else in
   double quotes with `\\"`, `\\\\`, `\\$` and `` \\` `` escaped (a double-quoted value may
   span lines). `parse_env_file` reads the whole documented syntax back.
2. the command: `ExecStart=... $IOC_CMD` splits the value into argv words the way
   systemd's `extract_first_word(..., EXTRACT_UNQUOTE|EXTRACT_RELAX)` does: at
   whitespace, honouring '...' and "..." quotes and backslash escapes (also inside
   quotes). `quote_exec_words` is its inverse, `split_exec_words` the split itself.

So any argv (spaces, quotes, backslashes, `$`, newlines, empty words) survives
`quote_exec_words` → `format_env_file` → systemd. Must not know: files, consrv's config.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "Assignment",
    "EnvFile",
    "EnvSyntaxError",
    "format_env_file",
    "format_value",
    "parse_env_file",
    "quote_exec_words",
    "split_exec_words",
]

KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Unquoted, a value of these characters means exactly itself (single inner spaces allowed).
_PLAIN_VALUE_RE = re.compile(r"[A-Za-z0-9_./:,+=@%^~-]+(?: [A-Za-z0-9_./:,+=@%^~-]+)*")
_PLAIN_WORD_RE = re.compile(r"[^\s'\"\\]+")
_ESCAPED_IN_DOUBLE = frozenset('"\\`$')
_BLANK = " \t\r"  # stripped around an unquoted value
_WORD_SEPARATORS = " \t\n\r"


class EnvSyntaxError(ValueError):
    """A value that cannot be written, or an unterminated quote when reading."""


@dataclass(frozen=True)
class Assignment:
    key: str
    value: str
    line: int  # where the assignment starts (1-based)


@dataclass(frozen=True)
class EnvFile:
    """What systemd takes from a file, and the lines it ignores (line number, text)."""

    assignments: tuple[Assignment, ...]
    ignored: tuple[tuple[int, str], ...]


# ---------------------------------------------------------------- writing


def format_value(value: str) -> str:
    """`value` as systemd's EnvironmentFile= reads it back exactly. Raises EnvSyntaxError."""
    if "\0" in value:
        raise EnvSyntaxError("a value cannot contain a NUL byte")
    if _PLAIN_VALUE_RE.fullmatch(value):
        return value
    escaped = "".join(f"\\{ch}" if ch in _ESCAPED_IN_DOUBLE else ch for ch in value)
    return f'"{escaped}"'


def format_env_file(assignments: Iterable[tuple[str, str]], comments: Sequence[str] = ()) -> str:
    """The text of an environment file: `# comment` lines, then one `KEY=VALUE` per line."""
    lines = [f"# {comment}".rstrip() for comment in comments]
    for key, value in assignments:
        if not KEY_RE.fullmatch(key):
            raise EnvSyntaxError(f"{key!r} is not a variable name")
        lines.append(f"{key}={format_value(value)}")
    return "".join(f"{line}\n" for line in lines)


def quote_exec_words(words: Sequence[str]) -> str:
    """One string that `$VAR` expansion in ExecStart= splits back into `words`."""
    return " ".join(_quote_word(word) for word in words)


def _quote_word(word: str) -> str:
    if _PLAIN_WORD_RE.fullmatch(word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ---------------------------------------------------------------- reading


def parse_env_file(text: str) -> EnvFile:
    """The assignments of an EnvironmentFile=, in order (a later one wins in systemd).

    Blank lines and `#`/`;` comments are skipped; lines without `=` or with a
    key that is not a variable name are ignored by systemd and listed in
    `ignored`. Raises EnvSyntaxError for a quote that is never closed.
    """
    reader = _EnvReader(text)
    assignments = tuple(reader.assignments())
    return EnvFile(assignments, tuple(reader.ignored))


class _EnvReader:
    """A cursor over the file's text; one method per syntactic element."""

    def __init__(self, text: str) -> None:
        self.text, self.pos, self.line = text, 0, 1
        self.ignored: list[tuple[int, str]] = []

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _take(self) -> str:
        ch = self._peek()
        self.pos += 1
        if ch == "\n":
            self.line += 1
        return ch

    def assignments(self) -> Iterable[Assignment]:
        while self.pos < len(self.text):
            start = self.line
            line = self._physical_line()
            if line.strip(_BLANK)[:1] in ("#", ";", ""):
                self._take_rest_of_line()
                continue
            if "=" not in line:
                self.ignored.append((start, line))
                self._take_rest_of_line()
                continue
            key = line.split("=", 1)[0].strip(_BLANK)
            self.pos += len(line.split("=", 1)[0]) + 1
            value = self._value()
            if KEY_RE.fullmatch(key):
                yield Assignment(key, value, start)
            else:
                self.ignored.append((start, line))

    def _physical_line(self) -> str:
        end = self.text.find("\n", self.pos)
        return self.text[self.pos : len(self.text) if end < 0 else end]

    def _take_rest_of_line(self) -> None:
        while self._peek() not in ("", "\n"):
            self._take()
        self._take()

    def _value(self) -> str:
        while self._peek() in (" ", "\t"):
            self._take()
        quote = self._peek()
        if quote in ("'", '"'):
            self._take()
            value = self._single_quoted() if quote == "'" else self._double_quoted()
            return value + self._unquoted()  # systemd keeps text after the closing quote
        return self._unquoted()

    def _single_quoted(self) -> str:
        chars = []
        while (ch := self._take()) != "'":
            if ch == "":
                raise EnvSyntaxError(f"line {self.line}: unterminated '...'")
            chars.append(ch)
        return "".join(chars)

    def _double_quoted(self) -> str:
        chars = []
        while (ch := self._take()) != '"':
            if ch == "":
                raise EnvSyntaxError(f'line {self.line}: unterminated "..."')
            if ch == "\\":
                nxt = self._take()
                if nxt == "\n":
                    continue  # a line continuation
                chars.append(nxt if nxt in _ESCAPED_IN_DOUBLE else ch + nxt)
            else:
                chars.append(ch)
        return "".join(chars)

    def _unquoted(self) -> str:
        chars: list[str] = []
        while (ch := self._take()) not in ("", "\n"):
            if ch == "\\":
                nxt = self._take()
                if nxt not in ("\n", ""):
                    chars.append(nxt)
            else:
                chars.append(ch)
        return "".join(chars).rstrip(_BLANK)


def split_exec_words(value: str) -> list[str]:
    """argv words from `value` as ExecStart='s unbraced `$VAR` expansion makes them.

    Quotes may start anywhere in a word; a backslash keeps the next character (also
    inside quotes); an unterminated quote ends at the end of the value (systemd's
    EXTRACT_RELAX).
    """
    words: list[str] = []
    pos = 0
    while True:
        while pos < len(value) and value[pos] in _WORD_SEPARATORS:
            pos += 1
        if pos >= len(value):
            return words
        word, pos = _one_word(value, pos)
        words.append(word)


def _one_word(value: str, pos: int) -> tuple[str, int]:
    chars: list[str] = []
    quote = ""
    while pos < len(value):
        ch = value[pos]
        pos += 1
        if ch == "\\" and pos < len(value):
            chars.append(value[pos])
            pos += 1
        elif quote and ch == quote:
            quote = ""
        elif quote:
            chars.append(ch)
        elif ch in ("'", '"'):
            quote = ch
        elif ch in _WORD_SEPARATORS:
            break
        else:
            chars.append(ch)
    return "".join(chars), pos
