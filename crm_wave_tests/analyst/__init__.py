"""Tests of the analysts' snapshots, views and read-only SQL."""
