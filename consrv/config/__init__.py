"""Config: the YAML file → a validated, frozen `Config`; every error names its key path.

pydantic v2 does the validation: it is well kept, and every error it reports
carries the location (`loc`) of the bad value, which becomes the key path in our
messages (`consoles.my-ioc.socket: expected a path`). Two steps:

1. the `Raw*` models in `schema.py` mirror the file: frozen, unknown keys
   forbidden, each value parsed by a small validator (`values.py`, wrapped for
   pydantic in `fields.py`: sizes, HOST:PORT, public keys, names);
2. `resolve.py` turns them into the frozen dataclasses of `model.py` that the
   rest of consrv uses: relative paths joined to the config file's directory,
   `keys_file` read, ACL entries checked against the configured users and
   groups, defaults applied.

`problems.py` turns pydantic's errors into key paths; `load.py` reads the YAML
(a key given twice is an error) and runs both steps.

All problems of a step are reported together, one `<key.path>: <problem>` a line.
The package is organised by stage, never by section: a new top-level section has
its raw model in `schema.py`, its dataclass in `model.py`, its resolution in
`resolve.py`; an optional section (``fleet:``, ``web:``, ``identity:``, ``pva:``:
absent, it turns a feature off) in each stage's ``_optional`` module
(`schema_optional.py`, `model_optional.py`, `resolve_optional.py`), which keeps
each stage module to a few hundred lines. `Endpoint` (HOST:PORT), used by every
stage, is a value (`values.py`). Only the names below are the package's interface.

Must not know: trio, sockets, SSH sessions. docs/configuration.md is the reference.
"""

from consrv.config.errors import ConfigError, Problem
from consrv.config.load import load_config, parse_config
from consrv.config.model import (
    CIPHERS,
    DEFAULT_CIPHERS,
    DEFAULT_HOST_KEY,
    MAX_UNIX_SOCKET_PATH,
    Config,
    ConsoleConfig,
    ConsoleDefaults,
    IocConfig,
    LogConfig,
    MessageLimits,
    Pattern,
    SshConfig,
    User,
)
from consrv.config.model_optional import (
    FleetConfig,
    IdentityConfig,
    PeerAddress,
    PvaAlarms,
    PvaConfig,
    PvaConsole,
    WebConfig,
    WebLimits,
    WebTls,
    restart_only,
)
from consrv.config.values import (
    Endpoint,
    parse_duration,
    parse_endpoint,
    parse_public_key,
    parse_size,
    split_ca_line,
)

__all__ = [
    "CIPHERS",
    "DEFAULT_CIPHERS",
    "DEFAULT_HOST_KEY",
    "MAX_UNIX_SOCKET_PATH",
    "Config",
    "ConfigError",
    "ConsoleConfig",
    "ConsoleDefaults",
    "Endpoint",
    "FleetConfig",
    "IdentityConfig",
    "IocConfig",
    "LogConfig",
    "MessageLimits",
    "Pattern",
    "PeerAddress",
    "Problem",
    "PvaAlarms",
    "PvaConfig",
    "PvaConsole",
    "SshConfig",
    "User",
    "WebConfig",
    "WebLimits",
    "WebTls",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_endpoint",
    "parse_public_key",
    "parse_size",
    "restart_only",
    "split_ca_line",
]
