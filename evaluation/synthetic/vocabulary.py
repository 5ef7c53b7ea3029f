"""The closed vocabulary of the synthetic world: shapes, colours, sizes, words and prompts.

Everything a question or an answer can say is listed here, so a tiny LLaMA trained for minutes
sees a small, consistent language. Cached worlds are keyed by a digest of this package's source
(see `world.py`), so editing anything here regenerates them.
"""

from __future__ import annotations

SHAPES = ("circle", "square", "triangle", "cross")
# Object frequencies are deliberately uneven (the same prior in every split), so POPE's
# "popular" negatives ask about objects the model has seen most often, as in the real POPE.
SHAPE_WEIGHTS = (0.34, 0.28, 0.22, 0.16)

# Well separated on a dark background.
COLORS = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 90, 230),
    "yellow": (235, 215, 40),
    "purple": (160, 60, 210),
    "white": (235, 235, 235),
}
COLOR_NAMES = tuple(COLORS)
COLOR_WEIGHTS = (0.24, 0.2, 0.18, 0.15, 0.12, 0.11)
BACKGROUND = (28, 28, 28)

SIZES = ("small", "large")

# Three-letter words, none of them a colour, shape, size, number word or yes/no: few enough that a
# tiny model can learn to tell them apart in minutes.
WORDS = ("CAT", "SUN", "BOX", "EGG", "FOX", "OWL")
WORD_SCALES = ("large", "medium")  # how big a word is drawn (scene.TEXT_VIEW_PX)
# Left out: "A" (the VQA answer normaliser deletes the article "a"), "I" and "O" (they read as 1 and 0).
LETTERS = tuple("BCDEFGHJKLMNPQRSTUVWXYZ")
NUMBERS = tuple(str(n) for n in range(100))
SUM_OPERANDS = (1, 4)  # inclusive range of each operand of a drawn "a+b"


# The prompt pieces exactly as lmms-eval's task code builds them (default lmms_eval_specific_kwargs);
# tests/evaluation/test_tasks_synthetic.py checks training prompts against lmms-eval's doc_to_text.
SHORT_ANSWER_PROMPT = "\nAnswer the question using a single word or phrase."
OPTION_LETTER_PROMPT = "\nAnswer with the option's letter from the given choices directly."
MME_SUFFIX = " Please answer yes or no."
MMBENCH_OPTIONS_HEADER = "There are several options:"
CAPTION_PROMPT = "Describe the image briefly."
