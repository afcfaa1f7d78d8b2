"""A sync under test: both simulators, their clients and a fresh DuckDB store (fixture `rig`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from crm_wave.store import Store
from crm_wave.sync.engine import PassResult, sync_once
from crm_wave.systems.crm.client import CrmClient
from crm_wave.systems.wave.client import Mutation, MutationResult, WaveClient


@dataclass
class Rig:
    """Clients of both simulators and the sync's store."""

    crm: CrmClient
    wave: WaveClient
    store: Store
    crm_db: Path

    def sync(self, **kw) -> list[PassResult]:
        """One sync: passes until nothing is left to write."""
        return sync_once(self.store, {"crm": self.crm, "wave": self.wave}, **kw)

    def wave_write(self, name: str, data: dict) -> MutationResult:
        """One Wave mutation that must succeed."""
        (res,) = self.wave.mutate([Mutation(name, data, "t")])
        assert res.ok, res.errors
        return res

    def crm_create(self, resource: str, body: dict) -> dict:
        """Create a CRM record (a fresh idempotency key each call)."""
        import uuid

        return self.crm.create(resource, body, idempotency_key=str(uuid.uuid4()))

    def crm_dirty(self, resource: str, body: dict, rid: str | None = None) -> str:
        """Write a record straight into the CRM simulator's database, bypassing its validation,
        as a CRM with legacy data would hold it; return its Id. `rid`: a new version of that record."""
        import datetime as dt
        import json

        from crm_wave.systems.crm.simulator.store import FIRST_ID, Store as CrmStore, format_ts

        prefix = {"customers": "C", "products": "P", "orders": "O"}[resource]
        db = CrmStore(self.crm_db)
        with db.write() as tx:
            old = None if rid is None else tx.get(resource, rid)
            version = 1 if old is None else old.version + 1
            rid = rid or f"{prefix}{tx.next_value(f'id:{resource}', FIRST_ID)}"
            full = {**body, "Id": rid, "Version": version, "UpdatedAt": format_ts(dt.datetime.now(dt.UTC))}
            tx.put(resource, rid, seq=tx.next_seq(resource), version=version, deleted=False, ukey=None, body=json.dumps(full))
        db.close()
        return rid

    def crm_raw(self, resource: str, rid: str, body: object) -> None:
        """Store `body` (any JSON value, as it is: no Id, Version or UpdatedAt added) as record `rid` of the CRM
        simulator, as a CRM with broken data lists it."""
        import json

        from crm_wave.systems.crm.simulator.store import Store as CrmStore

        db = CrmStore(self.crm_db)
        with db.write() as tx:
            tx.put(resource, rid, seq=tx.next_seq(resource), version=1, deleted=False, ukey=None, body=json.dumps(body))
        db.close()

    def links(self, entity: str):
        """The link table of an entity."""
        with self.store.connect() as con:
            return self.store.read_links(con, entity)


@pytest.fixture
def rig(crm_sim, wave_sim, tmp_path: Path) -> Iterator[Rig]:
    """Both simulators, empty, with clients and a store in tmp_path."""
    from crm_wave.systems.crm.profile import load_profile

    with CrmClient(base_url=crm_sim.url, token=crm_sim.token, profile=load_profile(crm_sim.style)) as crm, \
            WaveClient(url=wave_sim.url, token=wave_sim.token) as wave:
        yield Rig(crm=crm, wave=wave, store=Store(tmp_path / "crm_wave.duckdb"), crm_db=crm_sim.db_path)
