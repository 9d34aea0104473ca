"""The Shapes world: scenes and their exact renderer, the prompt and edit grammar, the
image parser, the strict checker and the fixed prompt sets.

    from qwenrl.world import load_prompt_set, check_image, render
    prompt = load_prompt_set("t2i", "test")[0]
    result = check_image(prompt, image)   # image: (32, 32, 3) uint8
    result.passed, result.reasons
"""

from .check import CheckResult, check_edit, check_image, check_t2i
from .grammar import (
    EDIT_FAMILIES,
    T2I_FAMILIES,
    VOCAB,
    EditTask,
    GrammarError,
    T2IPrompt,
    check_words,
    sample_edit,
    sample_t2i_prompt,
    sample_t2i_prompt_in_split,
    scene_for_prompt,
    split_of_text,
)
from .parse import (
    ParsedObject,
    ParsedScene,
    is_exact_parse,
    noisy_render,
    object_centroid,
    parse,
    parse_errors,
)
from .prompt_sets import SPLITS, TASKS, load_prompt_set
from .scene import IMAGE_SIZE, PALETTE, Obj, Scene, render, render_indices

__all__ = [
    "CheckResult",
    "EDIT_FAMILIES",
    "EditTask",
    "GrammarError",
    "IMAGE_SIZE",
    "Obj",
    "PALETTE",
    "ParsedObject",
    "ParsedScene",
    "SPLITS",
    "Scene",
    "T2IPrompt",
    "T2I_FAMILIES",
    "TASKS",
    "VOCAB",
    "check_edit",
    "check_image",
    "check_t2i",
    "check_words",
    "is_exact_parse",
    "load_prompt_set",
    "noisy_render",
    "object_centroid",
    "parse",
    "parse_errors",
    "render",
    "render_indices",
    "sample_edit",
    "sample_t2i_prompt",
    "sample_t2i_prompt_in_split",
    "scene_for_prompt",
    "split_of_text",
]
