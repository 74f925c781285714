"""The Train tab's presets: named starting points, per task, and whether the form still is one.

A preset sets a few settings and explains itself in one line. Freeze depth is given as blocks
from the top ("freeze_from_top"), so one preset fits a 6-block MiniLM and a 30-block SmolLM2.
Text generation's first preset is the engine's own recommendation
(`studio.tasks.generate.RECOMMENDED`), so the UI and `studio train` start from the same place.
"""

from __future__ import annotations

import math

# name -> (one-line reason, settings). Freeze depth is "blocks minus n", so it fits any model.
PRESETS = {
    "Quick try": ("One pass over the data, only the top block and the head learn: a first result "
                  "in a minute or two.", {"method": "freeze", "freeze_from_top": 1, "epochs": 1,
                                          "learning_rate": 5e-4}),
    "Balanced": ("The studio's default: the top four blocks adapt to your task, the lowest keep their "
                 "general language skills.", {"method": "freeze", "freeze_from_top": 4, "epochs": 3,
                                             "learning_rate": 3e-4}),
    "Best quality": ("Every weight learns with a small learning rate: slowest, usually the best "
                     "score when you have a few thousand rows.", {"method": "full", "epochs": 4,
                                                                  "learning_rate": 5e-5}),
    "LoRA": ("Small adapter matrices learn and the base stays untouched: few parameters, hard to "
             "break, tiny to store.", {"method": "lora", "epochs": 3, "learning_rate": 1e-3, "lora_r": 8}),
}
# Text generation. "Teach it fast" takes its settings from the engine (RECOMMENDED) when used.
GEN_PRESETS = {
    "Teach it fast": ("LoRA with a high learning rate: teaches a small chat model a new fact or style "
                      "(like the identity sample) in a few minutes on a laptop.", None),
    "Gentle LoRA": ("LoRA with a lower learning rate over more passes: slower, keeps more of what the "
                    "model knew.", {"method": "lora", "epochs": 4, "learning_rate": 2e-4, "lora_r": 8,
                                    "batch_size": 8, "max_length": 256}),
    "Top blocks only": ("The top four blocks learn, everything below stays as pretrained.",
                        {"method": "freeze", "freeze_from_top": 4, "epochs": 3, "learning_rate": 1e-4,
                         "batch_size": 8, "max_length": 256}),
}
DEFAULT_PRESET = {"classify": "Balanced", "generate": "Teach it fast"}
CUSTOM = "Custom: these settings are no preset's any more. Pick one to start from it again."


def presets(task: str) -> dict:
    """name -> (reason, settings) for a task; the generation one is filled from the engine."""
    if task != "generate":
        return PRESETS
    from studio.tasks.generate import RECOMMENDED   # imported late: it is engine code
    reason, _ = GEN_PRESETS["Teach it fast"]
    return {"Teach it fast": (reason, dict(RECOMMENDED)), **{k: v for k, v in GEN_PRESETS.items() if v[1]}}


def preset_values(task: str, choice: str, blocks: int) -> dict:
    """The settings a preset sets, with "freeze_from_top" turned into this model's freeze depth."""
    values = dict(presets(task).get(choice, (None, {}))[1])
    if "freeze_from_top" in values:
        values["freeze_depth"] = max(0, blocks - values.pop("freeze_from_top"))
    return values


def preset_holds(task: str, choice: str, blocks: int, values: dict) -> bool:
    """Whether `values` still are what preset `choice` sets (the settings it leaves alone, such as
    the batch size, may be anything). Numbers from the page are floats: compared loosely."""
    def same(want, have) -> bool:
        try:
            return math.isclose(float(have), float(want), rel_tol=1e-6)
        except (TypeError, ValueError):      # a word ("freeze"), or nothing at all
            return want == have
    wanted = preset_values(task, choice, blocks)
    return bool(wanted) and all(same(v, values.get(k)) for k, v in wanted.items() if k in values)
