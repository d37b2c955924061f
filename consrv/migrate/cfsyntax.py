"""conserver.cf syntax: text → blocks of `key value;` statements, as conserver reads it.

A port of conserver's own reader (cutil.c: GetWord, ParseFile; man conserver.cf):
- `block-type block-name { keyword value; ... }`; block types and keywords are
  case-insensitive; whitespace separates words only where a block type or a
  keyword is expected: names and values keep inner whitespace (`rw bryan todd;`
  gives "bryan todd"); leading and trailing whitespace is dropped.
- `{ } ;` are tokens, `#` starts a comment, `\\` makes the next character literal,
  `"..."` quotes everything but `\\"`.
- `#include FILE` in column 0 reads FILE in place (at most 10 deep).
- Errors are reported and skipped as conserver does: a block with a syntax error
  is dropped, the rest of the file is read.
Must not know: what the blocks mean (conserver.py does), the file system (the
caller passes a `read` function).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from consrv.migrate.draft import Notice, Origin

__all__ = ["BLOCK_KEYS", "Block", "Statement", "parse_cf"]

MAX_INCLUDE_DEPTH = 10
_DEFAULT_KEYS = frozenset(
    {
        "baud", "break", "breaklist", "device", "devicesubst", "exec", "execrunas",
        "execsubst", "host", "idlestring", "idletimeout", "include", "initcmd",
        "initrunas", "initspinmax", "initspintimer", "initsubst", "ipmiciphersuite",
        "ipmikg", "ipmiprivlevel", "ipmiworkaround", "logfile", "logfilemax", "master",
        "motd", "options", "parity", "password", "port", "portbase", "portinc",
        "protocol", "replstring", "ro", "rw", "tasklist", "timestamp", "type", "uds",
        "udssubst", "username",
    }
)  # fmt: skip
_CONFIG_KEYS = frozenset(
    {
        "autocomplete", "daemonmode", "defaultaccess", "initdelay", "logfile", "passwdfile",
        "primaryport", "redirect", "reinitcheck", "secondaryport", "setproctitle",
        "sslcacertificatefile", "sslcredentials", "sslreqclientcert", "sslrequired",
        "unifiedlog",
    }
)  # fmt: skip
BLOCK_KEYS: dict[str, frozenset[str]] = {
    "access": frozenset({"admin", "allowed", "include", "limited", "rejected", "trusted"}),
    "break": frozenset({"confirm", "delay", "string"}),
    "config": _CONFIG_KEYS,
    "console": _DEFAULT_KEYS | {"aliases"},
    "default": _DEFAULT_KEYS,
    "group": frozenset({"users"}),
    "task": frozenset({"cmd", "confirm", "description", "runas", "subst"}),
}


@dataclass(frozen=True)
class Statement:
    key: str  # lower case
    value: str
    origin: Origin


@dataclass(frozen=True)
class Block:
    kind: str  # lower case: console, default, group, access, config, break, task
    name: str
    origin: Origin
    statements: tuple[Statement, ...]


def parse_cf(path: str, read: Callable[[str], str], notices: list[Notice]) -> list[Block]:
    """The complete blocks of `path` (and the files it includes), in order.

    `read(path)` returns a file's text or raises OSError (the main file's error
    propagates; an include's becomes a notice). Problems are appended to `notices`.
    """
    parser = _Parser(read, notices)
    parser.run(_Lexer(path, read(path), depth=0))
    return parser.blocks


# ---------------------------------------------------------------- words


class _Kind(enum.Enum):
    WORD = "word"
    LEFT = "{"
    RIGHT = "}"
    SEMI = ";"
    INCLUDE = "#include"
    DONE = "end of file"


@dataclass(frozen=True)
class _Token:
    kind: _Kind
    text: str
    origin: Origin


_TOKENS = {"{": _Kind.LEFT, "}": _Kind.RIGHT, ";": _Kind.SEMI}


class _Lexer:
    """conserver's GetWord: the next word or token, with `spaceok` set by the parser."""

    def __init__(self, path: str, text: str, depth: int) -> None:
        self.path, self.text, self.depth = path, text, depth
        self.pos, self.line = 0, 1

    def next(self, spaceok: bool) -> _Token:
        word: list[str] = []
        backslash = quote = comment = saw_quote = quoted_backslash = False
        start = self.line
        while self.pos < len(self.text):
            at_line_start = self.pos == 0 or self.text[self.pos - 1] == "\n"
            ch = self.text[self.pos]
            self.pos += 1
            if ch == "\n":
                self.line += 1
            if comment:
                comment = ch != "\n"
            elif backslash:
                word.append(ch)
                backslash = False
            elif quote:
                if ch == '"' and not quoted_backslash:
                    quote = False
                elif ch == '"':
                    word.append(ch)
                    quoted_backslash = False
                else:
                    if quoted_backslash:
                        word.append("\\")
                    quoted_backslash = ch == "\\"
                    if not quoted_backslash:
                        word.append(ch)
            elif ch == "\\":
                if not word and not saw_quote:
                    start = self.line
                backslash = True
            elif ch == "#":
                if at_line_start and (name := self._include()) is not None:
                    return _Token(_Kind.INCLUDE, name, self._origin(self.line - 1))
                comment = True
            elif ch == '"':
                if not word and not saw_quote:
                    start = self.line
                quote = saw_quote = True
            elif ch.isspace():
                if not word:
                    continue
                if spaceok:
                    word.append(ch)
                    continue
                return self._word(word, start)
            elif ch in _TOKENS:
                if not word and not saw_quote:
                    return _Token(_TOKENS[ch], ch, self._origin(self.line))
                self.pos -= 1  # the token ends the word; read it next time
                return self._word(word, start)
            else:
                if not word and not saw_quote:
                    start = self.line
                word.append(ch)
        if quoted_backslash:
            word.append("\\")
        if word or saw_quote:
            return self._word(word, start)
        return _Token(_Kind.DONE, "", self._origin(self.line))

    def _include(self) -> str | None:
        """At `#` in column 0: the file of `#include FILE` (consumes the line), else None."""
        end = self.text.find("\n", self.pos)
        end = len(self.text) if end < 0 else end
        rest = self.text[self.pos : end]
        if not (rest.startswith("include") and rest[7:8].isspace() and rest[7:].strip()):
            return None
        self.pos = min(end + 1, len(self.text))
        if end < len(self.text):
            self.line += 1
        return rest[7:].strip()

    def _word(self, word: list[str], line: int) -> _Token:
        return _Token(_Kind.WORD, "".join(word).rstrip(), self._origin(line))

    def _origin(self, line: int) -> Origin:
        return Origin(self.path, line)


# ---------------------------------------------------------------- blocks


class _State(enum.Enum):
    START = "a block type"
    NAME = "a block name"
    LEFT = "'{'"
    KEY = "a keyword or '}'"
    VALUE = "a value"
    SEMI = "';'"


class _Parser:
    """conserver's ParseFile: a state machine over words, across #include'd files."""

    def __init__(self, read: Callable[[str], str], notices: list[Notice]) -> None:
        self.read, self.notices = read, notices
        self.blocks: list[Block] = []
        self.state = _State.START
        self.kind = self.name = self.key = ""
        self.origin = Origin("")
        self.statements: list[Statement] = []
        self.key_origin = Origin("")

    def run(self, lexer: _Lexer) -> None:
        stack = [lexer]
        token = _Token(_Kind.DONE, "", Origin(lexer.path, 1))
        while stack:
            token = stack[-1].next(self.state in (_State.NAME, _State.VALUE))
            if token.kind is _Kind.DONE:
                stack.pop()
            elif token.kind is _Kind.INCLUDE:
                self._include(stack, token)
            else:
                self._step(token)
        if self.state is not _State.START:
            self._problem(token.origin, f"end of file inside {self.kind} {self.name!r}")
            self.state = _State.START

    def _include(self, stack: list[_Lexer], token: _Token) -> None:
        depth = stack[-1].depth + 1
        if depth >= MAX_INCLUDE_DEPTH:
            self._problem(token.origin, f"#include {token.text}: nested too deep, not read")
            return
        path = token.text
        if not PurePosixPath(path).is_absolute():
            path = str(PurePosixPath(stack[-1].path).parent / path)
        try:
            text = self.read(path)
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            self._problem(token.origin, f"#include {token.text}: cannot read: {reason}")
            return
        stack.append(_Lexer(path, text, depth))

    def _step(self, token: _Token) -> None:
        handler = {
            _State.START: self._start,
            _State.NAME: self._name,
            _State.LEFT: self._left,
            _State.KEY: self._key,
            _State.VALUE: self._value,
            _State.SEMI: self._semi,
        }[self.state]
        handler(token)

    def _start(self, token: _Token) -> None:
        if token.kind is _Kind.WORD and token.text.lower() in BLOCK_KEYS:
            self.kind, self.origin = token.text.lower(), token.origin
            self.state = _State.NAME
        else:
            self._unexpected(token)

    def _name(self, token: _Token) -> None:
        if token.kind is _Kind.WORD:
            self.name, self.statements = token.text, []
            self.state = _State.LEFT
        else:
            self._unexpected(token)
            if token.kind is _Kind.RIGHT:
                self.state = _State.START

    def _left(self, token: _Token) -> None:
        if token.kind is _Kind.LEFT:
            self.state = _State.KEY
        else:
            self._unexpected(token)
            if token.kind is _Kind.RIGHT:
                self._abort()

    def _key(self, token: _Token) -> None:
        if token.kind is _Kind.RIGHT:
            self.blocks.append(Block(self.kind, self.name, self.origin, tuple(self.statements)))
            self.state = _State.START
        elif token.kind is _Kind.WORD and token.text.lower() in BLOCK_KEYS[self.kind]:
            self.key, self.key_origin = token.text.lower(), token.origin
            self.state = _State.VALUE
        elif token.kind is _Kind.WORD:
            self._problem(token.origin, f"unknown keyword {token.text!r} in a {self.kind} block")
            self.key = ""  # skip its value
            self.state = _State.VALUE
        else:
            self._unexpected(token)

    def _value(self, token: _Token) -> None:
        if token.kind is _Kind.WORD:
            if self.key:
                self.statements.append(Statement(self.key, token.text, self.key_origin))
            self.state = _State.SEMI
        elif token.kind is _Kind.RIGHT:
            self._unexpected(token)
            self._abort()
        else:
            self._unexpected(token)
            if token.kind is _Kind.SEMI:
                self.state = _State.KEY

    def _semi(self, token: _Token) -> None:
        if token.kind is _Kind.SEMI:
            self.state = _State.KEY
        else:
            self._unexpected(token)
            if token.kind is _Kind.RIGHT:
                self._abort()

    def _abort(self) -> None:
        self._problem(self.origin, f"{self.kind} {self.name!r}: dropped (syntax error in it)")
        self.state = _State.START

    def _unexpected(self, token: _Token) -> None:
        shown = token.text if token.kind is _Kind.WORD else token.kind.value
        self._problem(token.origin, f"expected {self.state.value}, found {shown!r}")

    def _problem(self, origin: Origin, message: str) -> None:
        self.notices.append(Notice(origin, message))
