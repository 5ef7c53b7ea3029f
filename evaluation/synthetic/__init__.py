"""The synthetic world: a seeded generator of scenes, LLaVA training data and benchmark-shaped
evaluation sets, the suite's built-in data (no download needed). Imports no torch."""

from evaluation.synthetic.baselines import chance_levels
from evaluation.synthetic.questions import EVAL_TASKS
from evaluation.synthetic.world import PRESETS, World, build_world

__all__ = ["EVAL_TASKS", "PRESETS", "World", "build_world", "chance_levels"]
