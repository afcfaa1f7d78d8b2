"""Pure polars logic of the sync: link, merge, share diff. No I/O."""
