"""The operator and analyst commands, end to end against both simulators."""

from __future__ import annotations

import json

import pytest

from crm_wave.cli import main


@pytest.fixture
def env(rig, sim_env):
    """The environment the commands read (`sim_env`), pointing at the rig's simulators and store."""
    return rig


def _tables(store) -> dict[str, int]:
    if not store.path.exists():
        return {}
    with store.connect() as con:
        names = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        return {n: con.execute(f'SELECT count(*) FROM "{n}"').fetchall()[0][0] for n in names}


def test_plan_shows_writes_field_by_field_and_changes_nothing(env, capsys):
    c = env.crm_create("customers", {"Type": "organization", "Name": "Planned AS", "Email": "plan@x.example"})
    before = _tables(env.store)
    assert main(["plan"]) == 2
    out = capsys.readouterr().out
    assert "wave customer insert crm-customer:" in out and '    Name: null -> "Planned AS"' in out
    assert env.wave.list_customers() == []
    assert env.crm.get("customers", c["Id"])["Version"] == c["Version"]
    assert _tables(env.store) == before  # no cursor moved, nothing collected into the live file
    env.sync()
    assert main(["plan", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_sync_publishes_a_snapshot_that_sql_reads(env, capsys):
    env.crm_create("customers", {"Type": "person", "FirstName": "Ada", "LastName": "Lovelace", "Email": "ada@x.example"})
    assert main(["sync", "--once"]) == 0
    capsys.readouterr()
    assert main(["sql", "SELECT Name, Type, wave_id IS NOT NULL AS in_wave FROM golden_customers", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows == [{"Name": "Ada Lovelace", "Type": "person", "in_wave": True}]
    assert main(["sql", "SELECT system, op, outcome FROM sync_log_entries WHERE system = 'wave'", "--format", "csv"]) == 0
    assert "wave,insert,ok" in capsys.readouterr().out


def test_sync_shows_progress_on_stderr_unless_quiet(env, capsys):
    for i in range(3):
        env.crm_create("customers", {"Type": "organization", "Name": f"Progress {i}", "Email": f"p{i}@x.example"})
    assert main(["sync", "--once"]) == 0
    err = capsys.readouterr().err
    assert "crm_customer: read 3, wrote 3 versions (full=True)" in err
    assert "wave customer: 3/3 sent (100%)" in err
    env.crm_create("customers", {"Type": "organization", "Name": "Quiet", "Email": "q@x.example"})
    assert main(["sync", "--once", "--quiet"]) == 0
    out = capsys.readouterr()
    assert "sent (" not in out.err and "pass(es)" in out.out


def test_sync_log_records_before_and_after(env):
    c = env.crm_create("customers", {"Type": "organization", "Name": "Logged", "Email": "log@x.example", "Phone": "1"})
    env.sync()
    env.crm.patch("customers", c["Id"], {"Phone": "2"}, if_match=env.crm.get("customers", c["Id"])["Version"])
    env.sync()
    with env.store.connect() as con:
        rows = con.execute("SELECT system, op, changes::VARCHAR, before::VARCHAR, outcome FROM sync_log "
                           "WHERE system = 'wave' ORDER BY logged_at").fetchall()
    assert rows[0][:2] == ("wave", "insert") and rows[0][4] == "ok"
    assert ("wave", "update", '{"Phone": "2"}', '{"Phone": "1"}', "ok") in rows


def test_held_delete_is_listed_then_approved(env, capsys):
    c = env.crm_create("customers", {"Type": "organization", "Name": "Gone Soon", "Email": "gone@x.example"})
    env.sync()
    env.crm.delete("customers", c["Id"], if_match=None)
    env.sync(full=True)
    assert len(env.wave.list_customers()) == 1  # never deleted blindly
    assert main(["deletes"]) == 0
    out = capsys.readouterr().out
    assert f"crm-customer:{c['Id']}: deleted in crm; approve to delete wave customer" in out
    assert main(["deletes", "approve", f"crm-customer:{c['Id']}"]) == 0
    assert env.wave.list_customers() == []
    # Done, so no longer pending: not listed now, nor after an incremental pass (which cannot see
    # a Wave delete; the approval recorded it in the Wave dataset).
    capsys.readouterr()
    assert main(["deletes"]) == 0
    assert "0 delete(s) waiting" in capsys.readouterr().out
    env.sync()
    assert main(["deletes"]) == 0
    assert "0 delete(s) waiting" in capsys.readouterr().out
    assert len(env.wave.list_customers()) == 0 and env.crm.get("customers", c["Id"]) is None


def test_held_product_delete_is_approved_as_an_archive_and_then_no_longer_listed(env, capsys):
    p = env.crm_create("products", {"Name": "Old Widget", "UnitPrice": "5"})
    env.sync()
    env.crm.delete("products", p["Id"], if_match=None)
    env.sync()
    assert main(["deletes"]) == 0
    assert f"crm-product:{p['Id']}: deleted in crm; approve to archive wave product" in capsys.readouterr().out
    assert main(["deletes", "approve", "--all"]) == 0
    capsys.readouterr()
    assert [w["isArchived"] for w in env.wave.list_products()] == [True]
    env.sync()  # reads the archived product back: nothing is left to delete
    assert main(["deletes"]) == 0
    assert "0 delete(s) waiting" in capsys.readouterr().out


def test_dead_letters_park_after_three_attempts_and_retry_on_request(env, capsys):
    biz = env.wave.business_id
    env.wave_write("customerCreate", {"businessId": biz, "name": "A", "email": "a@x.example", "displayId": "SAME"})
    env.wave_write("customerCreate", {"businessId": biz, "name": "B", "email": "b@x.example", "displayId": "SAME"})
    for _ in range(4):
        env.sync(max_passes=1)
    with env.store.connect() as con:
        (attempts,) = con.execute("SELECT attempts FROM dead_letters").fetchall()[0]
    assert attempts == 3  # the fourth pass parked it instead of trying again
    assert main(["deadletters"]) == 0
    assert "CustomerNumber" in capsys.readouterr().out
    assert main(["deadletters", "retry", "--all"]) == 0
    env.sync(max_passes=1)
    with env.store.connect() as con:
        assert con.execute("SELECT attempts FROM dead_letters").fetchall()[0][0] == 1
        (gid,) = con.execute("SELECT global_id FROM dead_letters").fetchall()[0]
    capsys.readouterr()
    assert main(["deadletters", "retry", gid, "wave-customer:nope"]) == 10  # one unknown: nothing retried
    assert "no dead letter for wave-customer:nope" in capsys.readouterr().err
    with env.store.connect() as con:
        assert con.execute("SELECT attempts FROM dead_letters").fetchall()[0][0] == 1
    assert main(["deadletters", "retry", gid]) == 0
    assert "1 dead letter(s) will be retried" in capsys.readouterr().out


def test_circuit_breaker_holds_mass_overwrites_until_confirmed(env, capsys):
    from crm_wave.sync.breaker import CircuitOpen

    ids = [env.crm_create("customers", {"Type": "organization", "Name": f"N{i}", "Email": f"n{i}@x.example",
                                        "Phone": "old"})["Id"] for i in range(60)]
    env.sync()
    for cid in ids:
        env.crm.patch("customers", cid, {"Phone": "new"}, if_match=env.crm.get("customers", cid)["Version"])
    with pytest.raises(CircuitOpen, match="60 overwrites/deletes against 60 records"):
        env.sync()
    assert {c["phone"] for c in env.wave.list_customers()} == {"old"}
    assert main(["confirm"]) == 0
    assert "OPEN" in capsys.readouterr().out
    assert main(["confirm", "wave_customer_share"]) == 0
    assert "confirmed" in capsys.readouterr().out
    env.sync()
    assert {c["phone"] for c in env.wave.list_customers()} == {"new"}


def test_sync_command_reports_a_held_push_with_exit_code_3(env, capsys):
    ids = [env.crm_create("customers", {"Type": "organization", "Name": f"H{i}", "Email": f"h{i}@x.example",
                                        "Phone": "old"})["Id"] for i in range(55)]
    assert main(["sync", "--once"]) == 0
    for cid in ids:
        env.crm.patch("customers", cid, {"Phone": "new"}, if_match=env.crm.get("customers", cid)["Version"])
    assert main(["sync", "--once"]) == 3
    err = capsys.readouterr().err
    assert "wave_customer_share: 55 overwrites/deletes against 55 records" in err and "crm-wave confirm" in err
    assert main(["confirm", "wave_invoice_share"]) == 0  # a real share table name is accepted
    assert main(["confirm", "nonsense_share"]) == 2
    assert main(["confirm", "wave_customer_share"]) == 0
    assert main(["sync", "--once"]) == 0
    assert {c["phone"] for c in env.wave.list_customers()} == {"new"}


@pytest.mark.parametrize("system, path", [("crm", "/api/v1/customers"), ("wave", "/graphql/public")])
def test_sim_commands_serve_over_http(system, path, tmp_path):
    import subprocess
    import sys
    import time

    import httpx

    from crm_wave.systems.serve import free_port

    port = free_port()
    cmd = [sys.executable, "-m", "crm_wave.cli", "sim", system, "--port", str(port), "--db", str(tmp_path / "s.db"),
           "--token", "tok"] + (["--seed", "1", "--customers", "3", "--products", "2", "--orders", "1"] if system == "crm" else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if system == "crm":
                    r = httpx.get(f"http://127.0.0.1:{port}{path}", headers={"Authorization": "Bearer tok"})
                    assert len(r.json()["items"]) == 3
                else:
                    r = httpx.post(f"http://127.0.0.1:{port}{path}", json={"query": "{ user { id } }"},
                                   headers={"Authorization": "Bearer tok"})
                    assert r.json()["data"]["user"]["id"]
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_plan_shows_the_policy_and_what_the_first_sync_would_queue_and_a_bad_policy_stops(env, tmp_path, capsys,
                                                                                          monkeypatch):
    env.crm_create("products", {"Name": "Nordic Headphones", "UnitPrice": "10"})
    env.wave_write("productCreate", {"businessId": env.wave.business_id, "name": "nordic headphones", "unitPrice": "10"})
    main(["plan"])
    out = capsys.readouterr().out
    assert "policy (defaults): first sync review; every field newest" in out
    assert '(new) product crm-product:' in out and 'Name: CRM "Nordic Headphones" vs Wave "nordic headphones"' in out
    assert "decide with: crm-wave conflicts resolve" in out
    assert [p["name"] for p in env.wave.list_products()] == ["nordic headphones"]

    (tmp_path / "policy.toml").write_text('[fields.product]\nName = "mine"\n')
    for argv in (["plan"], ["sync", "--once"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "[fields.product] Name = 'mine' is not one of newest, crm, wave" in err
    assert [p["name"] for p in env.wave.list_products()] == ["nordic headphones"]

    elsewhere = tmp_path / "elsewhere.toml"  # CRM_WAVE_POLICY names another file: the bad one is not read
    elsewhere.write_text('first_sync = "crm"\n')
    monkeypatch.setenv("CRM_WAVE_POLICY", str(elsewhere))
    main(["plan"])
    assert "first sync crm" in capsys.readouterr().out
    monkeypatch.setenv("CRM_WAVE_POLICY", str(tmp_path / "nope.toml"))
    assert main(["plan"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"CRM_WAVE_POLICY={tmp_path / 'nope.toml'}: no such file" in err
