"""``python -m consrv``: the same as the ``consrv`` command."""

from consrv.cli import main

raise SystemExit(main())
