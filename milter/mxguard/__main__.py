"""Allow ``python -m mxguard``."""

from mxguard.tools.cli import main

raise SystemExit(main())
