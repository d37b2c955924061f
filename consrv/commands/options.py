"""Parsing a command's words by its grammar (``commands.grammar``): positional words
and options, counts, log queries; `UsageError` says what is wrong.

Pure: no I/O, no consoles.
"""

from __future__ import annotations

from collections.abc import Sequence

from consrv.commands.grammar import VERBS
from consrv.logfiles import Query, parse_time

MAX_TAIL = 10000


class UsageError(Exception):
    """A malformed command line; str() says what is wrong."""


def no_args(verb: str, args: Sequence[str]) -> None:
    if args:
        raise UsageError(f"{verb} takes no arguments")


def split_words(verb: str, args: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Split `args` into positional words and options (``-n 5`` or ``-n5``), by the
    grammar of `verb` (`grammar.VERBS`)."""
    spec = VERBS[verb]
    flags, valued, max_positional = spec.flags, spec.valued, spec.positional
    positional: list[str] = []
    options: dict[str, str] = {}
    words = list(args)
    while words:
        word = words.pop(0)
        if word in flags:
            options[word] = ""
        elif word in valued or word[:2] in valued:
            key = word if word in valued else word[:2]
            value = word[2:] if word != key else (words.pop(0) if words else None)
            if value is None:
                raise UsageError(f"{verb}: {key} needs a value")
            options[key] = value
        elif word.startswith("-") and word != "-":
            raise UsageError(f"{verb}: unknown option {word[:20]!r}")
        else:
            positional.append(word)
    if len(positional) > max_positional:
        raise UsageError(f"{verb}: too many arguments")
    return positional, options


def log_query(flags: dict[str, str]) -> Query:
    """A log search from ``--grep``, ``--since`` and ``--until``; raises BadTime."""
    since, until = flags.get("--since"), flags.get("--until")
    return Query(
        text=flags.get("--grep", "").encode(),
        since=parse_time(since) if since is not None else None,
        until=parse_time(until) if until is not None else None,
    )


def count(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) <= MAX_TAIL:
        raise UsageError(f"-n wants a number of lines from 1 to {MAX_TAIL}")
    return int(text)
