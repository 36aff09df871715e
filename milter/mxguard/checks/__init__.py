"""The checks, in their default order of evaluation."""

from __future__ import annotations

from ..check import Check
from . import relay

ALL_CHECKS: tuple[Check, ...] = (relay.CHECK,)
