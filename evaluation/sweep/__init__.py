"""Sweeps: a YAML spec of axes expanded into cells, each trained, evaluated and measured, resumably.

`tokenpacker sweep [SPEC]` runs them (evaluation.sweep.command); `run_sweep` is the Python entry point.
"""
