"""The hypothesis profiles of the fuzz tests.

The tests decorate themselves with ``settings.get_profile(PROFILE)`` rather than loading a
profile globally, so the unit tests' own hypothesis settings are left alone in a full run.

``MXGUARD_FUZZ_EXAMPLES`` raises the number of examples per test for a deeper, randomised run
(``MXGUARD_FUZZ_EXAMPLES=20000 pytest tests/fuzz``); without it the run is small and
derandomised, so that ``make test`` is repeatable and quick. ``make fuzz`` is the long run.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

PROFILE = "mxguard-fuzz"

_EXAMPLES = os.environ.get("MXGUARD_FUZZ_EXAMPLES", "")

settings.register_profile(
    PROFILE,
    max_examples=int(_EXAMPLES) if _EXAMPLES else 200,
    deadline=None,
    # Repeatable in CI; a deep run asked for explicitly explores new inputs every time.
    derandomize=not _EXAMPLES,
    database=None,
    # The strategies build whole messages and INI files on purpose.
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
    ],
)
