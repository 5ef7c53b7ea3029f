"""The suite's lmms-eval tasks: pass this folder to lmms-eval as `--include_path` (or
`TaskManager(include_path=TASKS_DIR)`). Each task folder holds a YAML and a utils.py, the layout
lmms-eval uses for its own tasks; data come from the folder(s) named by TOKENPACKER_DATA_ROOT.
"""

import hashlib
from importlib.metadata import version
from pathlib import Path

TASKS_DIR = Path(__file__).parent
DATA_ROOT_ENV = "TOKENPACKER_DATA_ROOT"  # a folder, or several separated by os.pathsep, searched in order

SYNTHETIC_TASKS = ("syn_mme", "syn_textvqa", "syn_gqa", "syn_mmbench", "syn_pope")
SYNTHETIC_GROUP = "syn_all"
# local-mirror task -> the lmms-eval task it mirrors, which is also its folder under the data root
MIRROR_TASKS = {
    "local_mme": "mme",
    "local_textvqa_val": "textvqa_val",
    "local_gqa": "gqa",
    "local_mmbench_en_dev": "mmbench_en_dev",
    "local_pope": "pope",
    "local_scienceqa_img": "scienceqa_img",
}


def scoring_digest() -> str:
    """Covers the tasks' YAML and code and lmms-eval's version, so evaluations are redone when the
    scoring (or what it logs per sample) changes. Coarse on purpose: any task's edit redoes every
    evaluation, and an lmms-eval built from git under the same version number is not told apart."""
    digest = hashlib.sha256(version("lmms_eval").encode())
    for file in sorted(TASKS_DIR.rglob("*")):
        if file.suffix in (".py", ".yaml") and "__pycache__" not in file.parts:
            digest.update(str(file.relative_to(TASKS_DIR)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:12]
