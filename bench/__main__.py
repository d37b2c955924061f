"""``python -m bench``: run the side-by-side benchmark and print the Markdown report.

Use ``bench/run`` (it installs what is missing first). Options: ``--quick`` for
a ~2-minute smoke run, ``--only`` to run some servers, ``--workdir``/``--keep``
to look at the configs and logs afterwards, ``--output`` to save the report,
``--runs N`` to repeat the whole plan and report medians with their spread,
``--against REV`` to run consrv from another git revision beside this one (its
``consrv`` package extracted with ``git archive``, on this venv's libraries).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench import report, spread
from bench.runner import FULL, QUICK, Interrupted, exception_summary, run, stderr


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run",
        description="consrv vs OpenSSH sshd+socat vs conserver, on this machine, in one run.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, ~2 minutes")
    parser.add_argument(
        "--only", default=",".join(report.LABELS),
        help="comma-separated servers to run (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument("--workdir", type=Path, help="work directory (default: a new temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--output", type=Path, help="also write the report to this file")
    parser.add_argument(
        "--runs", type=int, default=1,
        help="repeat the whole plan N times; report each figure's median and range"
        " (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--against", metavar="REV",
        help="also run consrv from git revision REV (its consrv package on this venv) right"
        " after consrv in every step, and divide by it: a change's cost on one machine",
    )  # fmt: skip
    args = parser.parse_args(argv)
    only = tuple(s.strip() for s in args.only.split(",") if s.strip())
    unknown = set(only) - set(report.LABELS)
    if unknown:
        parser.error(f"--only: unknown {', '.join(sorted(unknown))}; use {report.LABELS}")
    args.only = only
    if args.runs < 1:
        parser.error("--runs: at least 1")
    return args


REPO = Path(__file__).resolve().parent.parent


def _extract(rev: str, workdir: Path) -> tuple[str, Path]:
    """(label, directory) of revision ``rev``'s consrv package, extracted under ``workdir``."""

    def git(*argv: str) -> bytes:
        full = ["git", "-C", str(REPO), *argv]
        done = subprocess.run(full, capture_output=True, check=False, timeout=60)  # noqa: S603
        if done.returncode != 0:
            reason = done.stderr.decode(errors="replace").strip().splitlines()
            raise SystemExit(f"bench: --against {rev}: {reason[-1] if reason else 'git failed'}")
        return done.stdout

    short = git("rev-parse", "--short", "--verify", f"{rev}^{{commit}}").decode().strip()
    label = report.AGAINST + short
    target = workdir / "against" / short
    target.mkdir(parents=True, exist_ok=True)
    archive = git("archive", "--format=tar", short, "consrv")
    untar = ["tar", "-x", "-C", str(target)]
    subprocess.run(untar, input=archive, check=True)  # noqa: S603 - an argv list
    return label, target


def _interrupted(exc: BaseException) -> bool:
    """Ctrl-C, SIGTERM or SIGHUP, possibly inside trio's exception groups."""
    wanted = (KeyboardInterrupt, Interrupted)
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup(wanted) is not None
    return isinstance(exc, wanted)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    if os.geteuid() != 0:
        stderr("bench: run as root (it runs sshd and installs Debian packages)")
        return 2
    command = os.environ.get("BENCH_COMMAND") or shlex.join(
        ["python", "-m", "bench", *sys.argv[1:]]
    )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="consrv-bench-"))
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    print(
        f"bench: {('quick' if args.quick else 'full')} mode, work directory {workdir}", flush=True
    )
    status = 1
    try:
        against = _extract(args.against, workdir) if args.against else None
        runs = []
        for i in range(1, args.runs + 1):
            if args.runs > 1:
                print(f"bench: run {i} of {args.runs}", flush=True)
            here = workdir / f"run{i}" if args.runs > 1 else workdir
            here.mkdir(exist_ok=True)
            plan = QUICK if args.quick else FULL
            runs.append(run(plan, here, args.only, command, against, against_first=i % 2 == 0))
            if args.runs > 1 and args.output:
                path = args.output.with_suffix(f".run{i}{args.output.suffix}")
                path.write_text(report.markdown(runs[-1]))
        text = report.markdown(runs[0]) if args.runs == 1 else spread.markdown(runs)
        print("\n" + text)
        if args.output:
            args.output.write_text(text)
        status = 0
    except BaseException as exc:  # noqa: BLE001 - reported in one place, with the work dir
        if _interrupted(exc):
            stderr("bench: interrupted; every process it started has been stopped")
            status = 130
        else:
            stderr(f"bench failed:\n{exception_summary(exc)}\n(logs in {workdir})")
            args.keep = True
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
