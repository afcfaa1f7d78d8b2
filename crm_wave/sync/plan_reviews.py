"""What `crm-wave plan` adds for the conflict queue: the policy in the scratch copy, the waiting items."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from crm_wave.config.settings import AppSettings
from crm_wave.mapping.policy import POLICY_FILE, policy_path
from crm_wave.store.queue import list_items

__all__ = ["copy_policy", "planned_reviews"]


def copy_policy(data_dir: Path, scratch_dir: Path) -> None:
    """Put the data dir's policy file beside the scratch copy, so the plan decides as the sync will."""
    if AppSettings.load().policy:
        return  # read from there by both
    src = policy_path(data_dir)
    if src.exists():
        shutil.copyfile(src, scratch_dir / POLICY_FILE)


def planned_reviews(live: Any, scratch: Any) -> list[dict[str, Any]]:
    """Open queue items after the planned sync; ids only for those the live store has recorded already."""
    with scratch.connect() as con:
        items = list_items(con)
    with live.connect() as con:
        known = {(i["entity"], i["global_id"], i["field"], i["crm_value"], i["wave_value"]): i["id"] for i in list_items(con)}
    return [{**i, "id": known.get((i["entity"], i["global_id"], i["field"], i["crm_value"], i["wave_value"]))}
            for i in items]
