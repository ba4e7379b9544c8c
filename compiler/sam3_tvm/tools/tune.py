"""`sam3-tvm tune`: MetaSchedule search for the costliest kernels of a component.

Tasks are the fused kernels of the component exactly as `compile` builds them (after
weight lifting and the CPU legalisations); the `--top` heaviest by FLOPs x calls are
tuned, `--trials` candidates each, measured on this machine. Each tuned kernel is then
timed against the same kernel under our default rules, and only the records that beat
the rules go to the JSON database under `tuning/<mcpu>/` (kept in the repo per CPU
family; `--db` or `$SAM3_TVM_TUNING_DB` choose another). `compile` applies every record
whose kernel it meets, and our default rules schedule the rest.

A faster kernel alone is not always a faster component: check with `sam3-tvm bench` /
`bench/profile_tvm.py` before committing a database.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from sam3_tvm.errors import Sam3TvmError
from sam3_tvm.progress import step

TUNING_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "tuning")


def database_dir(target) -> str:
    """`$SAM3_TVM_TUNING_DB` if set, else `tuning/<mcpu>/` in the repository."""
    return os.environ.get("SAM3_TVM_TUNING_DB") or \
        os.path.normpath(os.path.join(TUNING_ROOT, str(target.attrs["mcpu"])))


def open_database(target):
    """The tuning database for this CPU family, or None when there is none."""
    from tvm.s_tir import meta_schedule as ms

    d = database_dir(target)
    if not os.path.isfile(os.path.join(d, "database_workload.json")):
        return None
    return ms.database.JSONDatabase(work_dir=d, allow_missing=False)


def tune(config: str, components: list[str], trials: int, top: int, seed: int = 0,
         db: str | None = None, kernel: str | None = None, cpu: str | None = None,
         keep: str = "faster") -> str:
    """`kernel`: tune the kernels whose name contains it, or any of its comma-separated
    parts (e.g. `softmax`: memory-bound kernels that the FLOP ranking never picks),
    instead of the heaviest by FLOPs. `cpu`: tune the build for that LLVM CPU (as
    `compile --cpu`; e.g. x86-64-v3 for the AVX2 build), measured on this machine;
    the records go to `tuning/<cpu>/`. `keep`: "faster" copies only the records that
    beat the default rules to the database, "all" every best record (to study them)."""
    from tvm.s_tir import meta_schedule as ms

    from sam3_tvm.bundle.writer import kernel_rewrites
    from sam3_tvm.lowering import attention, pipeline
    from sam3_tvm.model import rope
    from sam3_tvm.frontend.importer import import_component
    from sam3_tvm.lowering.targets import host_target, parse
    from sam3_tvm.frontend.lift import lift_params
    from sam3_tvm.model.builder import build_model

    if trials < 1 or top < 1:
        raise Sam3TvmError("--trials and --top must be at least 1")
    if keep not in ("faster", "all"):
        raise Sam3TvmError(f"--keep must be 'faster' or 'all', got {keep!r}")
    spec = parse(cpu=cpu)  # one clear error for a CPU name LLVM does not know
    target = host_target(cpu=cpu)
    work_dir = db or database_dir(target)
    with step(f"build {config} model (seed {seed})"):
        model = build_model(config, seed=seed)
        rope.realify(model)
    tasks = []
    for name in components:
        with step(f"extract kernels of {name}"):
            # imported as `compile` imports it for this CPU, so the tasks are its kernels
            mod, params, names = import_component(name, model, model.sam3_tvm_config,
                                                  fused_attention=attention.supported(target),
                                                  cpu=True)
            mod = kernel_rewrites(name, mod, spec, target)
            mod, _, _ = lift_params(name, mod, params, names)
            # exactly the kernels `compile` schedules (same legalise/fold/fuse)
            mod = pipeline.optimize(mod, target, schedule=False, use_tuning=False)
            extracted = ms.relax_integration.extract_tasks(mod, target)
        parts = [k.strip() for k in (kernel or "").split(",") if k.strip()]
        pool = [t for t in extracted if any(k in t.task_name for k in parts)] if parts else extracted
        if kernel and not pool:
            raise Sam3TvmError(f"no kernel of {name} has {kernel!r} in its name")
        ranked = sorted(pool, key=lambda t: -_flops(t.dispatched[0]) * t.weight)[:top]
        for t in ranked:
            print(f"  {name}: {t.task_name} x{t.weight} ({_flops(t.dispatched[0]) / 1e9:.1f} GFLOP)")
        tasks += ranked
    # The search runs in a scratch database; only the records that beat our rules,
    # timed side by side here, are copied to `work_dir` (a record that loses would make
    # `compile` slower on this CPU).
    search_dir = tempfile.mkdtemp(prefix="sam3-tune-")
    try:
        # num_threads "logical": this machine's 2 cores are 2 logical CPUs
        ctxs, task_weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
            tasks, work_dir=search_dir, num_threads="logical", seed=seed)
        with step(f"tune {len(ctxs)} kernels, {trials} trials each"):
            search = ms.relax_integration.tune_tasks(
                tasks=ctxs, task_weights=task_weights, work_dir=search_dir,
                max_trials_global=trials * len(ctxs), max_trials_per_task=trials,
                num_trials_per_iter=min(trials, 16),
                # MetaSchedule's 30 s default failed every build on the Intel Xeon of
                # docs/performance.md (2 cores: each build worker starts Python and TVM
                # first); a timed-out build is a lost candidate, not a slow one
                builder=ms.builder.LocalBuilder(timeout_sec=BUILD_TIMEOUT_S))
        with step(f"time each tuned kernel against the default rules (database {work_dir})"):
            kept = keep_winners(tasks, search, work_dir, target, keep_all=keep == "all")
    finally:
        shutil.rmtree(search_dir, ignore_errors=True)
    print(f"{kept} of {len(tasks)} records kept in {work_dir}")
    return work_dir


# a record is kept only when it is clearly faster: timings on a busy 2-core machine
# move by a few per cent between runs
BUILD_TIMEOUT_S = 300.0  # per candidate build (see tune())
KEEP_BELOW = 0.95


def keep_winners(tasks, search, work_dir: str, target, rounds: int = 3,
                 keep_all: bool = False) -> int:
    """Copy to the database in `work_dir` the best record of each task whose kernel runs
    faster than the same kernel under `schedule.default_cpu_schedule` (both built
    here, timed alternately, medians of `rounds`), or of every task with `keep_all`.
    Returns how many were kept."""
    from tvm.s_tir import meta_schedule as ms

    out = None
    kept = 0
    for t in tasks:
        mod = t.dispatched[0]
        best = search.query_schedule(mod, target, workload_name="main")
        if best is None:
            print(f"  {t.task_name}: no valid candidate; rules kept")
            continue
        rules_s, tuned_s = _time_pair(_rule_scheduled(mod, target), best.mod, target, rounds)
        win = tuned_s < KEEP_BELOW * rules_s
        print(f"  {t.task_name}: rules {rules_s * 1e3:.2f} ms, tuned {tuned_s * 1e3:.2f} ms "
              f"-> {'record kept' if win or keep_all else 'rules kept'}")
        if not (win or keep_all):
            continue
        rec = search.query_tuning_record(mod, target, workload_name="main")
        if out is None:
            os.makedirs(work_dir, exist_ok=True)
            out = ms.database.JSONDatabase(work_dir=work_dir, allow_missing=True)
        workload = out.commit_workload(mod)
        out.commit_tuning_record(ms.database.TuningRecord(
            rec.trace, workload, rec.run_secs, rec.target, rec.args_info))
        kept += 1
    return kept


def _rule_scheduled(mod, target):
    import tvm

    from sam3_tvm.lowering.schedule import default_cpu_schedule

    with target:
        # on a fresh module: the pass would otherwise update the task's own in place
        return default_cpu_schedule()(tvm.IRModule(dict(mod.functions)))


def _time_pair(mod_a, mod_b, target, rounds: int) -> tuple[float, float]:
    """Median seconds per call of two builds of one kernel, measured alternately on the
    same inputs (random floats; integer inputs zero, so that indices stay in range)."""
    import numpy as np
    import tvm
    from tvm.s_tir import meta_schedule as ms

    dev = tvm.cpu()
    rng = np.random.default_rng(0)
    args = []
    for info in ms.arg_info.ArgInfo.from_prim_func(mod_a["main"]):
        shape, dtype = [int(x) for x in info.shape], str(info.dtype)
        data = rng.standard_normal(shape).astype(dtype) if "float" in dtype else np.zeros(shape, dtype)
        args.append(tvm.runtime.tensor(data, dev))
    evals = [tvm.compile(m, target=target).mod.time_evaluator("main", dev, number=1, repeat=3,
                                                             min_repeat_ms=50)
             for m in (mod_a, mod_b)]
    times = ([], [])
    for _ in range(rounds):
        for i, f in enumerate(evals):
            times[i].append(f(*args).median)
    return float(np.median(times[0])), float(np.median(times[1]))


def _flops(mod) -> float:
    from tvm.s_tir import analysis

    try:
        return float(analysis.estimate_tir_flops(mod))
    except Exception:  # noqa: BLE001
        return 0.0
