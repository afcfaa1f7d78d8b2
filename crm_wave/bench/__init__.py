"""`crm-wave bench`: how fast the sync is, at a million records and on loopback APIs.

Stages (`--only`):

- `transform`: a full pass at scale (collect from in-memory API pages, global, share) on
  a fresh DuckDB file, per stage, with the peak RSS and the snapshots (`bench/transform.py`);
- `incremental`: the next pass after 1 % of the CRM customers changed, against the full
  pass (same run as `transform`);
- `naive`: the engine's global and share steps against the per-record baseline of
  `bench/naive.py` on the same datasets, with the outputs compared (`bench/versus.py`);
- `api`: collect and push throughput against both simulators on loopback, and a push
  under a rate limit (`bench/api.py`);
- `latency`: edit-to-other-side latency of `make dev`'s schedule and sensor, measured live
  (not with `--quick`) and modelled from measured stage durations (`bench/latency.py`);
- `edit`: one edit carried to Wave and read back by a warm engine, a warm Dagster run and
  `crm-wave sync --once`, and what an idle tenant costs (`bench/edit.py`).

The transform stage also publishes snapshots of its store and measures each
(`bench/snapshots.py`). The many-tenant figures come from `python -m crm_wave.bench.tenants`
(PostgreSQL); `--tenants-json FILE` prints its result beside its goal. Every goal of issue
#16 is printed beside its figure (`__main__.py`; docs/benchmarks.md, "The goals").

Each measured run happens in a fresh subprocess (so peak RSS is that run's own), `--runs`
times; the table shows medians. The data is synthetic and seeded (`bench/data.py`).
Results and the machine's cores and memory go to stdout, and with `--json` to a file.
"""

from crm_wave.bench.data import DEFAULT, NAIVE, QUICK, Dataset, Scale

__all__ = ["Scale", "Dataset", "DEFAULT", "NAIVE", "QUICK"]
