"""Tools around the sync: the demo, the local dev stack, the soak run and the report."""
