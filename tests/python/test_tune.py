"""`sam3-tvm tune` writes a MetaSchedule database that `compile` then applies."""
import os
import subprocess
import sys

import numpy as np
import pytest


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("tuning"))
    r = subprocess.run([sys.executable, "-m", "sam3_tvm.cli", "tune", "--config", "tiny",
                        "--component", "text_encoder", "--kernel", "layer_norm", "--trials", "2",
                        "--top", "1", "--db", d, "--keep", "all"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    with open(os.path.join(d, "database_tuning_record.json")) as f:
        assert sum(1 for line in f if line.strip()) >= 1
    return d


def _text_encoder(monkeypatch, db, tmp):
    import tvm
    from tvm import relax

    from sam3_tvm.model import components as C
    from sam3_tvm.lowering import pipeline
    from sam3_tvm.model import rope
    from sam3_tvm.frontend.importer import import_component
    from sam3_tvm.bundle.writer import kernel_rewrites
    from sam3_tvm.lowering.targets import host_target, parse
    from sam3_tvm.frontend.lift import lift_params
    from sam3_tvm.model.builder import build_model

    if db:
        monkeypatch.setenv("SAM3_TVM_TUNING_DB", db)
    else:
        monkeypatch.setenv("SAM3_TVM_TUNING_DB", "/nonexistent")
    model = build_model("tiny", seed=0)
    rope.realify(model)
    mod, params, names = import_component("text_encoder", model, model.sam3_tvm_config)
    target = host_target()
    # as compile builds it for this CPU (the packed fp32 linears on AVX-512 Intel)
    mod = kernel_rewrites("text_encoder", mod, parse(), target)
    mod, arrays, _ = lift_params("text_encoder", mod, params, names)
    opt = pipeline.optimize(mod, target)
    ex = tvm.compile(opt, target=target, relax_pipeline=pipeline.build_pipeline())
    # exported and loaded: the packed linears' C kernel is a source module until linked
    path = os.path.join(tmp, ("tuned" if db else "default") + ".so")
    ex.export_library(path, options=["-O3"])
    vm = relax.VirtualMachine(tvm.runtime.load_module(path), tvm.cpu())
    ids = [tvm.runtime.tensor(x.numpy()) for x in C.example_inputs("text_encoder", model.sam3_tvm_config)]
    out = vm["main"](*ids, *[tvm.runtime.tensor(a) for a in arrays])
    kernels = {gv.name_hint: f.script() for gv, f in opt.functions.items() if isinstance(f, tvm.tirx.PrimFunc)}
    return kernels, out[0].numpy()


def test_compile_applies_the_database(db, monkeypatch, tmp_path):
    tuned, out_tuned = _text_encoder(monkeypatch, db, str(tmp_path))
    default, out_default = _text_encoder(monkeypatch, None, str(tmp_path))
    assert tuned.keys() == default.keys()
    assert sum(tuned[k] != default[k] for k in tuned) >= 1  # the tuned kernel replaced ours
    np.testing.assert_allclose(out_tuned, out_default, rtol=1e-5, atol=1e-5)


def test_bad_arguments():
    r = subprocess.run([sys.executable, "-m", "sam3_tvm.cli", "tune", "--trials", "0"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "at least 1" in r.stderr


def test_kernel_filter_names_a_missing_kernel():
    r = subprocess.run([sys.executable, "-m", "sam3_tvm.cli", "tune", "--config", "tiny",
                        "--component", "text_encoder", "--kernel", "no_such_kernel", "--trials", "1",
                        "--db", "/tmp/sam3-tune-unused"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 1 and "no kernel of text_encoder has 'no_such_kernel'" in r.stderr


def _naive_record(tmp_path):
    """A 256^3 matmul task and a search database whose best record leaves it unscheduled
    (one thread, scalar loops): far slower than the default rules by construction."""
    from types import SimpleNamespace

    import tvm
    from tvm import te
    from tvm.s_tir import meta_schedule as ms

    from sam3_tvm.lowering.targets import host_target

    a = te.placeholder((256, 256), name="a")
    b = te.placeholder((256, 256), name="b")
    k = te.reduce_axis((0, 256), name="k")
    c = te.compute((256, 256), lambda i, j: te.sum(a[i, k] * b[k, j], axis=k), name="c")
    mod = tvm.IRModule({"main": te.create_prim_func([a, b, c])})
    target = host_target()
    search = ms.database.MemoryDatabase()
    workload = search.commit_workload(mod)
    sch = tvm.s_tir.Schedule(mod)
    sch.get_sblock("c")  # a trace that changes nothing (the database skips empty ones)
    search.commit_tuning_record(ms.database.TuningRecord(
        sch.trace, workload, [1e-6], target,
        ms.arg_info.ArgInfo.from_prim_func(mod["main"])))
    return [SimpleNamespace(task_name="matmul", dispatched=[mod])], search, target


def test_a_record_slower_than_the_rules_is_not_kept(tmp_path):
    from sam3_tvm.tools.tune import keep_winners

    tasks, search, target = _naive_record(tmp_path)
    out = str(tmp_path / "db")
    # the record claims 1 us; the side-by-side timing, not the claim, decides
    assert keep_winners(tasks, search, out, target, rounds=1) == 0
    assert not os.path.exists(os.path.join(out, "database_tuning_record.json"))
    assert keep_winners(tasks, search, out, target, rounds=1, keep_all=True) == 1
    with open(os.path.join(out, "database_tuning_record.json")) as f:
        assert sum(1 for line in f if line.strip()) == 1


def test_records_are_chosen_by_the_cpu_built_for(monkeypatch):
    from sam3_tvm.lowering.targets import host_target
    from sam3_tvm.tools.tune import TUNING_ROOT, database_dir, open_database

    monkeypatch.delenv("SAM3_TVM_TUNING_DB", raising=False)
    assert database_dir(host_target(cpu="x86-64-v3")) == os.path.normpath(
        os.path.join(TUNING_ROOT, "x86-64-v3"))
    # a CPU with no records: no database, the default rules schedule everything
    assert open_database(host_target(cpu="bonnell")) is None


def test_committed_records_load_and_are_for_their_folder():
    """Every `tuning/<mcpu>/` database in the repository opens, and each record was
    tuned for the CPU its folder names (compile looks records up by `mcpu`)."""
    from tvm.s_tir import meta_schedule as ms

    from sam3_tvm.tools.tune import TUNING_ROOT

    folders = sorted(os.listdir(TUNING_ROOT))
    assert folders
    for cpu in folders:
        db = ms.database.JSONDatabase(work_dir=os.path.join(TUNING_ROOT, cpu), allow_missing=False)
        records = db.get_all_tuning_records()
        assert records, cpu
        assert {str(r.target.attrs["mcpu"]) for r in records} == {cpu}
