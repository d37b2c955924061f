"""Migration: a consrv config from the configs IOC hosts already have.

`consrv import procserv` reads procServUtils' INI files and epics-ioc-runner's
files (`procserv.py`), `consrv import conserver` reads conserver.cf
(`cfsyntax.py` for its syntax, `conserver.py` for its meaning). Both fill a
`draft.Draft`, which `output.py` renders as commented YAML and checks as
`consrv check-config` would; `envfile.py` writes the environment files of the
`ioc@.service` template. `command.py` is the command line. docs/migrating.md
is the guide. Must not know: the running server.
"""
