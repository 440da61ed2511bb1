"""Shared test helpers: one time unit, scaled by SPIKE_TEST_TIME_SCALE on slow machines."""

from __future__ import annotations

import os

__all__ = ["UNIT", "MS"]

#: Every timeout in the tests is a multiple of this, in seconds. Set
#: SPIKE_TEST_TIME_SCALE=3 on a slow machine instead of editing timeouts.
UNIT = 1.0 * float(os.environ.get("SPIKE_TEST_TIME_SCALE", "1"))
MS = UNIT / 1000
