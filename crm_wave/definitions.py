"""Dagster entry point: loads `crm_wave/defs/`, nothing else."""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    """All definitions of the project, discovered in the defs folder."""
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
