"""The sync's stages as plain functions: collect -> global -> share -> push (no Dagster here)."""
