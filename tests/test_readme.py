"""The README's quick-start commands are exactly what CI runs."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    return dict(re.findall(r"<!-- ci:(\w+) -->\n```bash\n(.+)\n```", text))


def test_readme_marks_the_main_job_the_tests_and_the_smoke_gate():
    commands = readme_commands()
    assert commands["main"] == "bash scripts/setup.sh && .venv/bin/tokenpacker sweep"
    assert commands["tests"] == "bash scripts/setup.sh && .venv/bin/python -m pytest"
    assert "--check evaluation/sweeps/smoke_baseline.yaml" in commands["smoke"]
    assert (ROOT / "evaluation/sweeps/smoke_baseline.yaml").is_file()


def test_ci_runs_the_readme_commands():
    script = (ROOT / ".ci/run").read_text()
    assert "for name in tests smoke" in script
    extracted = subprocess.run(
        [
            "bash",
            "-c",
            "source <(sed -n '/^readme_command()/,/^}/p' .ci/run); readme_command tests; readme_command smoke",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    commands = readme_commands()
    assert extracted == [commands["tests"], commands["smoke"]]
