"""A real EPICS soft IOC with the genuine ``epics>`` shell, for the demo and the tests.

``python -m consrv.softioc [--db FILE] [--prefix P]`` loads a database (by default a
small built-in one), runs ``iocInit`` through epicscorelibs and then libCom's
``iocsh(NULL)``: the same interactive shell a real IOC gives under procServ, with
``dbl``, ``dbpr``, ``dbgf``, ... Leaving the shell (``exit`` or EOF) ends the process
with the shell's status (0).

Channel Access is kept on the loopback interface unless the environment says
otherwise, so demo and test IOCs never announce themselves on the network.

Must not know: procServ, consrv, SSH.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

DEFAULT_PREFIX = "demo:"

# $(P) is the record-name prefix; $(IOC) the IOC's name (the prefix without its ':').
DEFAULT_DB = """\
record(ai, "$(P)temperature") {
    field(DESC, "Simulated temperature")
    field(EGU,  "degC")
    field(PREC, "2")
    field(VAL,  "21.5")
    field(PINI, "YES")
}

record(calc, "$(P)counter") {
    field(DESC, "Counts up once a second")
    field(SCAN, "1 second")
    field(CALC, "A+1")
    field(INPA, "$(P)counter NPP")
}

record(stringin, "$(P)name") {
    field(DESC, "The IOC's name")
    field(VAL,  "$(IOC)")
    field(PINI, "YES")
}
"""

# Defaults only: an explicit setting in the environment wins.
LOOPBACK_CA_ENV = {
    "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1",
    "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
    "EPICS_CAS_BEACON_ADDR_LIST": "127.0.0.1",
    "EPICS_CA_AUTO_ADDR_LIST": "NO",
    "EPICS_CA_ADDR_LIST": "127.0.0.1",
}


def macros_for(prefix: str) -> str:
    """The macro string for the database: ``P=<prefix>,IOC=<name>``."""
    ioc_name = prefix.rstrip(":") or "softioc"
    return f"P={prefix},IOC={ioc_name}"


@contextlib.contextmanager
def default_db() -> Iterator[Path]:
    """The built-in database as a readable path that never touches the disk.

    The text goes into a pipe (it is far below the pipe's 64 KiB buffer) and
    ``/dev/fd/N`` names the read end, so a killed IOC leaves no file behind.
    """
    read_end, write_end = os.pipe()
    try:
        with open(write_end, "wb") as writer:  # closed here: the reader sees EOF
            writer.write(DEFAULT_DB.encode())
        yield Path(f"/dev/fd/{read_end}")
    finally:
        os.close(read_end)


def start(db: Path, prefix: str) -> None:
    """Load ``db`` with ``$(P)=prefix`` and run iocInit (the db file is read completely)."""
    for key, value in LOOPBACK_CA_ENV.items():
        os.environ.setdefault(key, value)
    # Imported here: loading EPICS' shared libraries happens only when an IOC starts.
    from epicscorelibs.ioc import start_ioc

    start_ioc(dbs=[(str(db), macros_for(prefix))], extra_dbd_load=(), extra_dso_load=())


def shell() -> int:
    """Run libCom's interactive ``iocsh(NULL)`` until ``exit`` or EOF; its status."""
    from epicscorelibs.ioc import Com

    iocsh = Com.iocsh
    iocsh.argtypes = [ctypes.c_char_p]
    iocsh.restype = ctypes.c_int
    status: int = iocsh(None)
    return status


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m consrv.softioc",
        description="Run an EPICS soft IOC with the interactive epics> shell.",
    )
    parser.add_argument("--db", type=Path, help="database file (default: a built-in demo db)")
    parser.add_argument(
        "--prefix", default=DEFAULT_PREFIX, help="record-name prefix, $(P) (default: %(default)s)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.db is not None:
        start(args.db, args.prefix)
    else:
        with default_db() as db:
            start(db, args.prefix)
    return shell()


if __name__ == "__main__":
    sys.exit(main())
