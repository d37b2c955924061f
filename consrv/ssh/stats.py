"""The SSH front's counters for ``/metrics``: logins, authentication and handshake
failures, limits under abuse, open sessions by login and role.

Owns the SSH failure vocabulary (each reason a fixed label value) and `SshStats`,
which the SSH front counts into and the metrics registry collects.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from consrv.access import Role
from consrv.metrics.labels import OTHER, ROLE_LABELS, bounded

AUTH_FAILURE_REASONS = (
    "unknown_key",
    "unknown_login",
    "bad_certificate",
    "revoked",
    "no_method",
    "timeout",
    "unknown_user",  # a login name the directory (NSS, the keys command) does not know
    "directory_unavailable",  # the directory did not answer, and no cached answer may serve
    "other",
)
# Each refused authentication request (a connection may make several: MaxAuthTries).
AUTH_ATTEMPT_REASONS = (
    "unknown_key",
    "unknown_login",
    "bad_certificate",
    "revoked",
    "no_method",
    "unknown_user",
    "directory_unavailable",
    "other",
)
# New SSH connections closed at once: too many unauthenticated ones in total or from
# one source, or too few file descriptors left.
REFUSAL_REASONS = ("startups", "per_source", "descriptors")
ACCEPT_ERRORS = ("EMFILE", "ENFILE", "ENOBUFS", "ENOMEM")
# Why a connection ended before its first authentication request (consrv.ssh.handshake).
HANDSHAKE_FAILURE_REASONS = (
    "no_matching_kex",
    "no_matching_host_key",
    "no_matching_cipher",
    "no_matching_mac",
    "no_matching_compression",
    "kex_failed",
    "protocol_error",
    "bad_version",
    "closed",
    "timeout",
    "other",
)


SessionsProvider = Callable[[], Iterable[tuple[str, Role | None]]]


def _no_sessions() -> Iterable[tuple[str, Role | None]]:
    return ()


def _labelled(name: str, documentation: str, label: str, counts: Mapping[str, int]) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for value, count in counts.items():
        family.add_metric([value], count)
    return family


class SshStats:
    """SSH logins and authentication failures (counted by the SSH front), sessions (read).

    ``logins`` are the two configured login names; ``sessions`` returns one
    ``(login name, role)`` per open session (role None: not on a console).
    """

    def __init__(self, logins: Iterable[str], sessions: SessionsProvider = _no_sessions) -> None:
        self.logins = tuple(dict.fromkeys(logins))
        self.sessions = sessions
        self.login_counts: Counter[str] = Counter(dict.fromkeys(self.logins, 0))
        self.failures: Counter[str] = Counter(dict.fromkeys(AUTH_FAILURE_REASONS, 0))
        self.handshakes: Counter[str] = Counter(dict.fromkeys(HANDSHAKE_FAILURE_REASONS, 0))
        self.attempt_failures: Counter[str] = Counter(dict.fromkeys(AUTH_ATTEMPT_REASONS, 0))
        self.refused: Counter[str] = Counter(dict.fromkeys(REFUSAL_REASONS, 0))
        self.accept_errors: Counter[str] = Counter(dict.fromkeys(ACCEPT_ERRORS, 0))
        self.sessions_refused = 0
        self.unauthenticated: Callable[[], int] = lambda: 0

    def login(self, login_name: str) -> None:
        """A user authenticated under ``login_name``."""
        self.login_counts[bounded(login_name, self.logins)] += 1

    def auth_failure(self, reason: str) -> None:
        """A connection failed to authenticate; ``reason`` one of AUTH_FAILURE_REASONS."""
        self.failures[bounded(reason, AUTH_FAILURE_REASONS)] += 1

    def auth_attempt_failure(self, reason: str) -> None:
        """One authentication request was refused; ``reason`` one of AUTH_ATTEMPT_REASONS."""
        self.attempt_failures[bounded(reason, AUTH_ATTEMPT_REASONS)] += 1

    def connection_refused(self, reason: str) -> None:
        """A new connection was closed at once; ``reason`` one of REFUSAL_REASONS."""
        self.refused[bounded(reason, REFUSAL_REASONS)] += 1

    def accept_error(self, error: str) -> None:
        """accept() failed for want of a resource (``error``: EMFILE, ENFILE, ...)."""
        self.accept_errors[bounded(error, ACCEPT_ERRORS)] += 1

    def handshake_failure(self, reason: str) -> None:
        """A connection ended before asking to authenticate; one of HANDSHAKE_FAILURE_REASONS."""
        self.handshakes[bounded(reason, HANDSHAKE_FAILURE_REASONS)] += 1

    def collect(self) -> Iterator[Metric]:
        logins = CounterMetricFamily(
            "consrv_ssh_logins", "Successful SSH authentications by login name.", labels=["login"]
        )
        for login, count in self.login_counts.items():
            logins.add_metric([login], count)
        failures = CounterMetricFamily(
            "consrv_ssh_auth_failures",
            "SSH connections that failed to authenticate, by reason.",
            labels=["reason"],
        )
        for reason, count in self.failures.items():
            failures.add_metric([reason], count)
        handshakes = CounterMetricFamily(
            "consrv_ssh_handshake_failures",
            "SSH connections that ended before asking to authenticate, by reason.",
            labels=["reason"],
        )
        for reason, count in self.handshakes.items():
            handshakes.add_metric([reason], count)
        yield from (logins, failures, handshakes, self._sessions(), *self._limits())

    def _limits(self) -> Iterator[Metric]:
        """What the limits under abuse refused (docs/security.md)."""
        yield _labelled(
            "consrv_ssh_auth_attempt_failures",
            "Refused SSH authentication requests (each key, certificate or method), by reason.",
            "reason",
            self.attempt_failures,
        )
        yield _labelled(
            "consrv_ssh_connections_refused",
            "New SSH connections closed at once, by reason (limits under abuse).",
            "reason",
            self.refused,
        )
        yield _labelled(
            "consrv_ssh_accept_errors",
            "Times accept() failed for want of a resource; consrv retried a second later.",
            "error",
            self.accept_errors,
        )
        yield CounterMetricFamily(
            "consrv_ssh_sessions_refused",
            "SSH session channels refused: max_sessions were open on the connection.",
            value=self.sessions_refused,
        )
        yield GaugeMetricFamily(
            "consrv_ssh_unauthenticated_connections",
            "Open SSH connections that have not authenticated yet.",
            value=self.unauthenticated(),
        )

    def _sessions(self) -> GaugeMetricFamily:
        counts: Counter[tuple[str, str]] = Counter(
            {(login, role): 0 for login in self.logins for role in ROLE_LABELS.values()}
        )
        for login, role in list(self.sessions()):
            counts[bounded(login, self.logins), ROLE_LABELS.get(role, OTHER)] += 1
        family = GaugeMetricFamily(
            "consrv_ssh_sessions", "Open SSH sessions by login and role.", labels=["login", "role"]
        )
        for labels, count in sorted(counts.items()):
            family.add_metric(list(labels), count)
        return family
