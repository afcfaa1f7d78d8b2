"""DuckDB storage: append-only datasets, links, agreed values, cursors, intents, dead letters."""

from crm_wave.store.db import Store

__all__ = ["Store"]
