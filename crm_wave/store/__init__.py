"""DuckDB storage: append-only datasets, links, agreed values, cursors, intents, dead letters."""

from crm_wave.store.connection import registered
from crm_wave.store.db import VERSION_SCHEMA, Store, Version, body_text

__all__ = ["Store", "Version", "VERSION_SCHEMA", "body_text", "registered"]
