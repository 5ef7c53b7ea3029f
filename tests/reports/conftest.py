"""Shared fixtures of the report tests: the fixture results folders and one report built from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from reports.build import build_report

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """tests/reports/fixtures: suite/, lmms_eval/, golden/ and paper_results.csv (see make_fixtures.py)."""
    return FIXTURES


@pytest.fixture(scope="session")
def built_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The full report for suite/ + lmms_eval/ with the quoted reference (built once: plots take seconds)."""
    out = tmp_path_factory.mktemp("report") / "out"
    build_report(
        [FIXTURES / "suite", FIXTURES / "lmms_eval"],
        out,
        reference_csv=FIXTURES / "paper_results.csv",
        resamples=500,
    )
    return out
