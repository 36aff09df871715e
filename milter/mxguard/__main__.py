"""Allow ``python -m mxguard``."""

from .cli import main

raise SystemExit(main())
