"""Pure value rules shared by the simulators and the sync (no I/O, no framework imports)."""
