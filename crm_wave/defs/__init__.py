"""Dagster definitions only: resources, the collect/global/share/push assets, schedule, sensors, checks."""
