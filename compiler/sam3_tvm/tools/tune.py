"""`sam3-tvm tune`: MetaSchedule search for the costliest kernels of a component.

Tasks are the fused kernels of the component exactly as `compile` builds them (after
weight lifting and the CPU legalisations); the `--top` heaviest by FLOPs x calls are
tuned, `--trials` candidates each, measured on this machine. Records go to a JSON
database under `tuning/<mcpu>/` (kept in the repo per CPU family; `--db` or
`$SAM3_TVM_TUNING_DB` choose another); `compile` applies every record whose kernel it
meets, and our default rules schedule the rest.

A tuned kernel is not always faster than the default schedule: compare with
`sam3-tvm bench` / `bench/profile_tvm.py` before keeping a database.
"""

from __future__ import annotations

import os

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
         db: str | None = None, kernel: str | None = None) -> str:
    """`kernel`: tune the kernels whose name contains it (e.g. `softmax`: memory-bound
    kernels that the FLOP ranking never picks) instead of the heaviest by FLOPs."""
    from tvm.s_tir import meta_schedule as ms

    from sam3_tvm.lowering import attention, pipeline
    from sam3_tvm.model import rope
    from sam3_tvm.frontend.importer import import_component
    from sam3_tvm.lowering.targets import host_target
    from sam3_tvm.frontend.lift import lift_params
    from sam3_tvm.model.builder import build_model

    if trials < 1 or top < 1:
        raise Sam3TvmError("--trials and --top must be at least 1")
    target = host_target()
    work_dir = db or database_dir(target)
    os.makedirs(work_dir, exist_ok=True)
    with step(f"build {config} model (seed {seed})"):
        model = build_model(config, seed=seed)
        rope.realify(model)
    tasks, weights = [], []
    for name in components:
        with step(f"extract kernels of {name}"):
            # imported as `compile` imports it for this CPU, so the tasks are its kernels
            mod, params, names = import_component(name, model, model.sam3_tvm_config,
                                                  fused_attention=attention.supported(target),
                                                  cpu=True)
            mod, _, _ = lift_params(name, mod, params, names)
            # exactly the kernels `compile` schedules (same legalise/fold/fuse)
            mod = pipeline.optimize(mod, target, schedule=False, use_tuning=False)
            extracted = ms.relax_integration.extract_tasks(mod, target)
        pool = [t for t in extracted if kernel in t.task_name] if kernel else extracted
        if kernel and not pool:
            raise Sam3TvmError(f"no kernel of {name} has {kernel!r} in its name")
        ranked = sorted(pool, key=lambda t: -_flops(t.dispatched[0]) * t.weight)[:top]
        for t in ranked:
            print(f"  {name}: {t.task_name} x{t.weight} ({_flops(t.dispatched[0]) / 1e9:.1f} GFLOP)")
        tasks += ranked
    # num_threads "logical": this machine's 2 cores are 2 logical CPUs
    ctxs, task_weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
        tasks, work_dir=work_dir, num_threads="logical", seed=seed)
    with step(f"tune {len(ctxs)} kernels, {trials} trials each (database {work_dir})"):
        ms.relax_integration.tune_tasks(
            tasks=ctxs, task_weights=task_weights, work_dir=work_dir,
            max_trials_global=trials * len(ctxs), max_trials_per_task=trials,
            num_trials_per_iter=min(trials, 16))
    return work_dir


def _flops(mod) -> float:
    from tvm.s_tir import analysis

    try:
        return float(analysis.estimate_tir_flops(mod))
    except Exception:  # noqa: BLE001
        return 0.0
