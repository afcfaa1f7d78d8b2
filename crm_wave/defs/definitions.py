"""The assets of assets.py (jobs, schedule and sensor are found in automation.py)."""

import dagster as dg

from crm_wave.defs.assets import snapshot, sync_pass


@dg.definitions
def defs() -> dg.Definitions:
    """The stages' assets (one multi-asset, `sync_pass`) and the analysts' snapshot."""
    return dg.Definitions(assets=[sync_pass, snapshot])
