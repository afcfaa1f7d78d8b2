"""A large rebuild's records, read once: each side's canonical records spilled to Parquet, the link fields held.

The global step of a large rebuild links every record of both sides, then merges them part by part. Linking
needs the merge keys of every record; the merge needs every field of a part's records. Holding every field of
a million records a side took 1 GB more at peak than holding the link fields; reading the datasets twice (the
link fields of every record, then each part's records with every field) parsed each body twice: the reads
were about half of the step's CPU (docs/benchmarks.md, "Session 31"). Here each side is read once, in chunks
of its dataset's `_seq`: each chunk's canonical records are written to Parquet files (lz4: ~0.07 s for
200,000 customers, where mapping them from the bodies takes ~1.3 s) and only the columns linking needs are
kept in memory, with the file each record is in. A part's records are then read back from the files that
hold them (`rows`), the last ones read kept for the next part.

The folder is the step's own (`<store file>.files/.spill-global_<type>`, under the step's lock): emptied when a
spill starts (what a crashed step left), deleted when the step ends. Nothing else reads it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import polars as pl

__all__ = ["Spill"]

#: A spilled file is read once or twice and deleted at the step's end: lz4, the fastest to write and read back.
COMPRESSION: Final = "lz4"
FILE_COLUMN = "_file"
#: Rows a spilled file holds (a chunk read is written in files of this many): a part of 122,880 links reads
#: about five of them a side, and the files the part before read are what is held between parts. Files of a
#: whole chunk (200,000 records) held up to two a side: the orders' rebuild at 1M peaked ~0.2 GB higher.
FILE_ROWS = 32_768
#: The sides whose files order the links (`in_file_order`): the CRM record's first.
ORDER = ("crm", "wave")


class Spill:
    """The spilled records of one global step (a `with` block: the folder is deleted on the way out)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._where: dict[str, pl.DataFrame] = {}  # side -> (<side>_id, _file)
        self._cache: dict[str, dict[int, pl.DataFrame]] = {}

    def __enter__(self) -> Spill:
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._cache.clear()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _path(self, side: str, k: int) -> Path:
        return self.folder / f"{side}-{k:05d}.parquet"

    def keep(self, side: str, chunks: Iterable[pl.DataFrame], columns: list[str]) -> pl.DataFrame:
        """Spill `chunks` (one side's canonical records, each record in one chunk) in files of `FILE_ROWS`, and
        return the `columns` of all of them, in the order read."""
        id_col = f"{side}_id"
        kept, where = [], []
        k = 0
        for chunk in chunks:
            kept.append(chunk.select(columns))
            for piece in chunk.iter_slices(FILE_ROWS):
                piece.write_parquet(self._path(side, k), compression=COMPRESSION, statistics=False)
                where.append(piece.select(pl.col(id_col), pl.lit(k, pl.UInt32).alias(FILE_COLUMN)))
                k += 1
        self._where[side] = pl.concat(where) if where else pl.DataFrame(schema={id_col: pl.String, FILE_COLUMN: pl.UInt32})
        return pl.concat(kept, how="vertical_relaxed")

    def in_file_order(self, links: pl.DataFrame) -> pl.DataFrame:
        """`links` ordered by the file of their CRM record, then of their Wave record (links of neither side's
        records last), in their order within each: a part of consecutive links reads few files of each side."""
        ordered = links.with_row_index("_i")
        keys = []
        # In this order whatever order the sides were kept in (`both_sides` keeps them at once, on two threads).
        for side in [s for s in ORDER if s in self._where]:
            col, as_ = f"{side}_id", f"_{side}{FILE_COLUMN}"
            ordered = ordered.join(self._where[side].rename({FILE_COLUMN: as_}), on=col, how="left", maintain_order="left")
            keys.append(as_)
        ordered = ordered.sort([*keys, "_i"], nulls_last=True)
        return ordered.drop([*keys, "_i"])

    def rows(self, side: str, ids: pl.Series) -> tuple[pl.DataFrame | None, pl.Series]:
        """(the spilled records of `ids` on `side`, in the order of their files, or None when no file holds one;
        the ids no file holds). The files read are kept until a call needs others."""
        id_col = f"{side}_id"
        wanted = pl.DataFrame({id_col: ids.cast(pl.String)})
        found = self._where[side].join(wanted, on=id_col, how="semi")
        need = sorted(set(found[FILE_COLUMN].to_list()))
        cache = self._cache.setdefault(side, {})
        for k in [k for k in cache if k not in need]:
            del cache[k]
        for k in need:
            if k not in cache:
                cache[k] = pl.read_parquet(self._path(side, k))
        absent = wanted.join(found.select(id_col), on=id_col, how="anti")[id_col]
        if not need:
            return None, absent
        held = pl.concat([cache[k] for k in need], how="vertical_relaxed") if len(need) > 1 else cache[need[0]]
        return held.join(wanted, on=id_col, how="semi", maintain_order="left"), absent
