"""The SSH command language as data: its verbs, their options, and where a console's
name is in a command line.

Owns the grammar both ends read: this host's `commands.shell` parses a command
line with it, and a fleet gateway (``fleet/gateway.py``) decides with it what
runs on the gateway, what is a fleet-wide report and what goes to a console's own
host. A verb taught here is known to both. Pure: no I/O, no consoles.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verb:
    """One command word and its grammar."""

    name: str
    flags: frozenset[str] = frozenset()  # options without a value
    valued: frozenset[str] = frozenset()  # options with one (``-n 5`` or ``-n5``)
    positional: int = 0  # words besides options, at most
    console: bool = False  # the first positional word is a console's name
    here_only: bool = False  # a gateway runs it on itself, never on a peer
    report: bool = False  # with no console named, a gateway answers for the whole fleet
    spans_hosts: bool = False  # a gateway runs it on every host that matches
    reads_files: bool = False  # only reads a console's files: a gateway's web pages may run it


_JSON = frozenset({"--json"})

VERBS: dict[str, Verb] = {
    verb.name: verb
    for verb in (
        Verb("attach", frozenset({"--ro", "--force"}), positional=1, console=True),
        Verb("list", _JSON, here_only=True, report=True),
        Verb("who", _JSON, report=True, positional=1, console=True),
        Verb("status", _JSON, report=True, positional=1, console=True),
        Verb("tail", frozenset({"-f", "--raw"}), frozenset({"-n"}), positional=1, console=True),
        Verb(
            "log",
            frozenset({"--raw", "--files", "--json"}),
            valued=frozenset({"--since", "--until", "--grep", "--file", "--last"}),
            positional=1,
            console=True,
            reads_files=True,
        ),
        Verb(
            "play", valued=frozenset({"--since", "--until", "--speed"}), positional=1, console=True
        ),
        Verb(
            "cast",
            valued=frozenset({"--since", "--until"}),
            positional=1,
            console=True,
            reads_files=True,
        ),
        Verb("web", here_only=True),
        Verb("follow", frozenset({"--raw"}), positional=1, here_only=True, spans_hosts=True),
        *(Verb(action, positional=1, console=True) for action in ("start", "stop", "restart")),
        Verb("help", here_only=True),
        Verb("version", here_only=True),
        Verb("watch", _JSON, here_only=True),
    )
}
# Verbs a gateway answers for the fleet when no console is named.
REPORTS = tuple(name for name, verb in VERBS.items() if verb.report)
# Options whose value is the next word, in any verb a gateway may forward.
_FORWARDED_VALUED = frozenset().union(
    *(verb.valued for verb in VERBS.values() if verb.console and not verb.here_only)
)

HELP = """\
usage: ssh -t LOGIN@HOST                     choose a console from a menu
       ssh -t LOGIN@HOST NAME                attach to console NAME
       ssh -t LOGIN@HOST attach NAME [--ro | --force]
       ssh LOGIN@HOST list [--json]          the consoles you may see
       ssh LOGIN@HOST who [NAME] [--json]    who is attached, and who writes
       ssh LOGIN@HOST status [NAME] [--json] console and IOC state
       ssh LOGIN@HOST tail NAME [-n N] [-f]  the last N lines (-f: and follow)
       ssh LOGIN@HOST log NAME [--since T] [--until T] [--grep TEXT]
                                             search the log files (T: ISO-8601 or 10m, 2h)
       ssh LOGIN@HOST log NAME --files [--json]  the log files; --file FILE: one file as it
                                             is (or searched); --json: matches with file:line
       ssh LOGIN@HOST log NAME --file FILE --last N [--json]  its last N lines (--json: and
                                             the first one's number)
       (tail, log, follow: --raw keeps the terminal escapes taken out when there is no pty)
       ssh -t LOGIN@HOST play NAME [--since T] [--until T] [--speed N]  replay the recording
       ssh LOGIN@HOST cast NAME [--since T] [--until T] > FILE.cast    the recording, asciicast v2
       ssh LOGIN@HOST web                    a one-time link to the read-only web view
       ssh LOGIN@HOST follow PATTERN [--raw] follow consoles matching PATTERN (a glob)
       ssh LOGIN@HOST start|stop|restart NAME  the IOC's unit (if you may operate it)
       ssh LOGIN@HOST help | version
On a console, ^Ec? lists the escapes (^Ec. detaches).
Exit status: 0 ok, 1 unknown console, 2 usage, 3 not allowed, 4 action failed.
"""


def name_index(words: list[str]) -> int | None:
    """Where the console's name is in a command line a gateway may send to the
    console's host (``NAME``, ``tail -n 5 NAME``), or None if it names none there."""
    verb = VERBS.get(words[0])
    if verb is None:
        return None if words[0].startswith("-") else 0  # a bare NAME
    if verb.here_only or not verb.console:
        return None
    skip = False
    for index, word in enumerate(words[1:], start=1):
        if skip:
            skip = False
        elif word in _FORWARDED_VALUED:
            skip = True
        elif not word.startswith("-"):
            return index
    return None
