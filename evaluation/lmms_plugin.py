"""Registers the suite's model with lmms-eval, so the stock `lmms-eval --model tokenpacker` finds it.

pyproject.toml points the `lmms_eval.models` entry point here; lmms-eval 0.7 loads the entry point
while importing `lmms_eval.models` and accepts a ModelManifest or a callable returning one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lmms_eval.models.registry_v2 import ModelManifest

MODEL_NAME = "tokenpacker"
MODEL_CLASS_PATH = "evaluation.model.TokenPackerLMM"


def manifest() -> ModelManifest:
    """The registration lmms-eval asks for, naming the model class without importing it (torch stays unloaded)."""
    # Imported on call: this module is loaded from inside `lmms_eval.models`' own import, so a module-level
    # import would be circular whenever this module is imported first.
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_NAME, simple_class_path=MODEL_CLASS_PATH)
