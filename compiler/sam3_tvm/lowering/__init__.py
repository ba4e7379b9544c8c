"""Relax/TIR lowering: optimisation pipelines, CPU schedules and fast math, bf16 and GPU targets."""
