"""The console servers under test: consrv, OpenSSH sshd + socat, conserver; the floor."""

from bench.servers.base import Ready, Server, ServerError
from bench.servers.conserver import Conserver
from bench.servers.consrv import Consrv
from bench.servers.floor import Floor
from bench.servers.sshd import SshdSocat

__all__ = ["Conserver", "Consrv", "Floor", "Ready", "Server", "ServerError", "SshdSocat"]
