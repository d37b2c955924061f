"""``python -m bench.discovered``: consoles found by a ``discover:`` glob, idle, and re-created.

Beside the full bench's configured consoles (its idle and down rows), the other
half of issue 17's first target:

- N procServ instances in ESS's layout (``ROOT/procServ/NAME/control``), found by
  ``discover: [ROOT/procServ/*/control]``, all connected and idle: consrv's CPU
  over a window (% of one core);
- then, R times, one of them killed and started again on the same path: the time
  from its new socket appearing (the bench watches the path every 0.5 ms) until
  consrv holds a connection to it (counted on procServ's side, /proc/net/unix,
  every 1 ms): how soon a restarted IOC's boot output is being read.

    python -m bench.discovered [--consoles 300] [--window 30] [--restarts 20]
        [--configured]      # the same consoles named in ``consoles:`` instead

Run as root from the repository, after ``bench/run`` installed the Debian
packages once. Prints each figure, the median and the range.

Owns: the discovering config and the restart timing.
Must not know: the other servers (consrv only: conserver has no discovery).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import trio

from bench.consoles import IdleConsoles
from bench.idle import SETTLE, wait_connections
from bench.procs import Reaper, accepted_connections, tree_cpu_seconds
from bench.runner import cleanup, raise_file_limit
from bench.servers import Consrv
from consrv.demo import ensure_client_key
from consrv.demo import socket_path as ess_socket_path


class DiscoveringConsrv(Consrv):
    """consrv whose consoles come from a ``discover:`` glob, not from ``consoles:``."""

    def __init__(self, workdir: Path, reaper: Reaper, key: Path, public: str, root: Path) -> None:
        super().__init__(workdir, reaper, key, public)
        self.root = root

    def config(self, consoles: Mapping[str, Path]) -> dict[str, object]:
        config = super().config(consoles)
        del config["consoles"]
        config["discover"] = [str(self.root / "procServ" / "*" / "control")]
        return config


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.discovered", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--consoles", type=int, default=300, help="(default: %(default)s)")
    parser.add_argument("--window", type=float, default=30.0, help="idle CPU window, s")
    parser.add_argument("--restarts", type=int, default=20, help="(default: %(default)s)")
    parser.add_argument(
        "--configured", action="store_true", help="name the consoles in consoles: instead"
    )
    return parser.parse_args(argv)


async def _until(what: str, check: Callable[[], bool], period: float, limit: float) -> float:
    """Poll ``check`` (a path or /proc/net/unix has no event to await) until it holds;
    the monotonic time it was first seen true."""
    with trio.move_on_after(limit):
        while not check():  # noqa: ASYNC110
            await trio.sleep(period)
        return time.monotonic()
    raise RuntimeError(f"gave up after {limit:g} s waiting for {what}")


async def _restart_once(
    reaper: Reaper, consoles: IdleConsoles, name: str, proc: subprocess.Popen[bytes]
) -> tuple[subprocess.Popen[bytes], float]:
    path = ess_socket_path(consoles.root, name)
    directory = path.parent
    reaper.stop([proc.pid], grace=5.0)
    proc.wait()
    path.unlink(missing_ok=True)  # procServ leaves its socket file behind when killed
    await _until(f"consrv to let go of {name}", lambda: accepted_connections(directory) == 0,
                 0.01, 10.0)  # fmt: skip
    await trio.sleep(1.0)  # consrv has seen it down and waits
    new = consoles.start_one(reaper, name)
    appeared = await _until(f"{path} to appear", path.exists, 0.0005, 10.0)
    held = await _until(f"consrv to connect to {name}",
                        lambda: accepted_connections(directory) >= 1, 0.001, 10.0)  # fmt: skip
    return new, held - appeared


async def _run(args: argparse.Namespace, workdir: Path, reaper: Reaper) -> None:
    root = workdir / "idle"
    consoles = IdleConsoles(root, args.consoles)
    procs = {name: consoles.start_one(reaper, name) for name in consoles.names}
    await consoles.wait_ready()
    key = workdir / "id_bench"
    public = ensure_client_key(key, "bench")
    if args.configured:
        server: Consrv = Consrv(workdir / "consrv", reaper, key, public)
    else:
        server = DiscoveringConsrv(workdir / "consrv", reaper, key, public, root)
    how = "configured" if args.configured else "discovered"
    server.start(consoles.sockets(args.consoles))
    try:
        await wait_connections(root, args.consoles)
        await trio.sleep(SETTLE)
        before, start = tree_cpu_seconds(server.pid), time.monotonic()
        await trio.sleep(args.window)
        cpu = 100 * (tree_cpu_seconds(server.pid) - before) / (time.monotonic() - start)
        print(f"{args.consoles} {how} consoles, connected, idle: {cpu:.3f} % of one core"
              f" over {args.window:g} s", flush=True)  # fmt: skip
        delays = []
        for i in range(args.restarts):
            name = consoles.names[i % len(consoles.names)]
            procs[name], delay = await _restart_once(reaper, consoles, name, procs[name])
            delays.append(1000 * delay)
            print(f"  {name} restarted: connected {delays[-1]:.1f} ms after its socket appeared",
                  flush=True)  # fmt: skip
        if delays:
            median, low, high = statistics.median(delays), min(delays), max(delays)
            print(f"re-created socket to connection: median {median:.1f} ms"
                  f" (range {low:.1f}..{high:.1f}, {len(delays)} restarts)")  # fmt: skip
    finally:
        server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    raise_file_limit(4096)
    workdir = Path(tempfile.mkdtemp(prefix="consrv-discovered-"))
    (workdir / "cwd").mkdir()
    os.chdir(workdir / "cwd")  # not the repository: see bench.focus
    reaper = Reaper()
    try:
        with cleanup(reaper):
            trio.run(_run, args, workdir, reaper)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
