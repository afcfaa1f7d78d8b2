"""The assets built by the factories in assets.py (jobs, schedule and sensor are found in automation.py)."""

import dagster as dg

from crm_wave.defs.assets import COLLECT, GLOBAL, PUSH, SHARE, snapshot


@dg.definitions
def defs() -> dg.Definitions:
    """The collect, global, share and push assets, and the analysts' snapshot."""
    return dg.Definitions(assets=[*COLLECT, *GLOBAL, *SHARE, *PUSH, snapshot])
