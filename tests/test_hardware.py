"""The hardware id names the CPU's ISA class: a row timed on one class is never reused or drawn as another's."""
from __future__ import annotations

import sqlite3

from compression import config
from compression.schema import SCHEMA_VERSION
from compression.store import Store


def test_the_isa_class_comes_from_the_cpu_flags():
    assert config.isa_class({"avx2", "fma", "avx512f", "amx_tile", "amx_bf16"}) == "amx"
    assert config.isa_class({"avx2", "fma", "avx512f"}) == "avx512"
    assert config.isa_class({"avx2", "fma"}) == "avx2"
    assert config.isa_class({"sse4_2"}) == "base"
    here = config.hardware_id()
    assert here.startswith("cpu-") and f"-{config.isa_class(config.cpu_flags())}-" in here


def test_a_setting_measured_on_one_cpu_class_is_queued_again_on_another(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    s.add_baseline("fp", "tiny", {}, {}, {})
    s.mark_prepared("fp", str(tmp_path), {})
    (amx,) = s.enqueue("fp", ["r1"], "cpu-x86_64-amx-2t")
    s.claim("cpu-x86_64-amx-2t", "w:1")
    s.finish(amx, {"accuracy": 0.8, "lat_b1_p50_ms": 2.0})
    (avx2,) = s.enqueue("fp", ["r1"], "cpu-x86_64-avx2-2t")
    assert avx2 != amx and s.job(avx2)["state"] == "queued"  # not reused: it will be timed here
    assert [r["job_id"] for r in s.results(hardware="cpu-x86_64-avx2-2t")] == []  # nor drawn as this class's


def test_a_v2_store_migrates_its_rows_to_the_class_of_the_cpu_they_recorded(tmp_path):
    path = tmp_path / "v2.sqlite"
    s = Store(f"sqlite:///{path}")
    s.add_baseline("fp", "tiny", {}, {}, {})
    s.mark_prepared("fp", str(tmp_path), {})
    here_job, other_job, queued_job = s.enqueue("fp", ["here", "other", "queued"], "cpu-x86_64-2t")
    for jid, cpu in ((here_job, config.cpu_model()), (other_job, "Some Other CPU")):
        s.claim("cpu-x86_64-2t", "w:1")
        s.finish(jid, {"accuracy": 0.8, "context": {"cpu": cpu}})
    s.engine.dispose()
    con = sqlite3.connect(path)  # as the previous code left it: schema 2, predictions inside each row's data
    con.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    con.execute("UPDATE results SET data = json_set(data, '$.predictions', json('[1,0,1]')), predictions = NULL")
    con.commit()
    con.close()
    s = Store(f"sqlite:///{path}")
    assert s.schema_version == SCHEMA_VERSION  # migrated all the way up
    isa = config.isa_class(config.cpu_flags())
    hw = {j["recipe"]: j["hardware"] for j in s.jobs()}
    assert hw == {"here": f"cpu-x86_64-{isa}-2t", "other": "cpu-x86_64-unknown-2t", "queued": f"cpu-x86_64-{isa}-2t"}
    assert all("predictions" not in r["data"] and r["data"]["accuracy"] == 0.8 for r in s.results())
    assert s.latest_result(here_job)["predictions"] == [1, 0, 1]  # moved to their own column, still there


def test_a_method_that_gains_a_knob_keeps_its_stored_settings_as_the_same_jobs(tmp_path):
    """Keys written before prune had --criterion and --pattern name the same settings as today's keys."""
    from compression.recipes import Recipe

    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    s = Store(url)
    s.add_baseline("fp", "tiny", {}, {}, {})
    old_key = ('[{"initial_sparsity":0.0,"method":"prune","recover_steps":0,"schedule":"none","scope":"global",'
               '"sparsity":0.5}]')  # as the code before the new knobs wrote it
    (jid,) = s.enqueue("fp", [old_key], "hw")
    with s.engine.begin() as c:  # as if that older code had opened the store last
        c.execute(__import__("sqlalchemy").text("UPDATE meta SET value = 'old' WHERE key = 'knob_signature'"))
    s = Store(url)
    assert s.enqueue("fp", [Recipe.parse("prune(sparsity=0.5)").key], "hw") == [jid]  # reused, not re-run
