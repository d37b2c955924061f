"""consrv's benchmarks (bench/README.md)."""

# consrv's warning filters (consrv/__init__.py) before any bench module imports asyncssh.
import consrv  # noqa: F401
