"""`Spill`: a large rebuild's records written once, their link columns held, a part's records read back."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal

import crm_wave.sync.spill as spill_module
from crm_wave.sync.spill import Spill


def _chunk(side: str, ids: list[str]) -> pl.DataFrame:
    return pl.DataFrame({f"{side}_id": ids, "Name": [f"name {i}" for i in ids], "Email": [f"{i}@x.no" for i in ids],
                         "Notes": [None if n % 2 else f"note {i}" for n, i in enumerate(ids)]})


def test_a_part_s_records_are_read_back_from_the_files_that_hold_them(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(spill_module, "FILE_ROWS", 2)  # the first CRM chunk in two files
    folder = tmp_path / ".spill-global_customer"
    folder.mkdir()
    (folder / "crm-00000.parquet").write_text("what a crashed step left")  # emptied when the spill starts
    chunks = {"crm": [_chunk("crm", ["c1", "c2", "c3"]), _chunk("crm", ["c4", "c5"])],
              "wave": [_chunk("wave", ["w1", "w2"]), _chunk("wave", ["w3"]), _chunk("wave", ["w4", "w5"])]}
    with Spill(folder) as spill:
        kept = {s: spill.keep(s, iter(c), [f"{s}_id", "Email"]) for s, c in chunks.items()}
        assert kept["crm"].columns == ["crm_id", "Email"] and kept["crm"]["crm_id"].to_list() == ["c1", "c2", "c3", "c4", "c5"]
        assert kept["wave"].height == 5
        assert sorted(p.name for p in folder.iterdir()) == [*(f"crm-{k:05d}.parquet" for k in range(3)),
                                                             *(f"wave-{k:05d}.parquet" for k in range(3))]
        whole = {s: pl.concat(c) for s, c in chunks.items()}
        # Linked across files, asked in an order of their own: every field of each comes back.
        got, absent = spill.rows("crm", pl.Series(["c5", "c1", "c9", "c4"]))
        assert got is not None and absent.to_list() == ["c9"]
        assert_frame_equal(got, whole["crm"].filter(pl.col("crm_id").is_in(["c5", "c1", "c4"])), check_row_order=False)
        got, absent = spill.rows("wave", pl.Series(["w3"]))
        assert got is not None and got["wave_id"].to_list() == ["w3"] and absent.len() == 0
        got, absent = spill.rows("wave", pl.Series(["w9"]))
        assert got is None and absent.to_list() == ["w9"]
        links = pl.DataFrame({"global_id": ["g1", "g2", "g3", "g4", "g5"],
                              "crm_id": [None, "c4", "c1", None, "c2"], "wave_id": ["w4", None, "w1", "w2", "w5"]})
        # By the CRM record's file, then the Wave record's; within a file in their order; links of neither last.
        assert spill.in_file_order(links)["global_id"].to_list() == ["g3", "g5", "g2", "g4", "g1"]
        assert spill.in_file_order(links).columns == links.columns
    assert not folder.exists()
    # The sides kept the other way round (they are kept at once, on two threads): the same order.
    with Spill(folder) as spill:
        for s in ("wave", "crm"):
            spill.keep(s, iter(chunks[s]), [f"{s}_id"])
        assert spill.in_file_order(links)["global_id"].to_list() == ["g3", "g5", "g2", "g4", "g1"]
