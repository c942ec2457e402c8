"""A corpus of bad inputs (issue 18): each is run as a user would and must end with one clear line naming
what and where, the right exit code, and no rows lost or mixed in. Nothing here loads a model."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli

# ------------------------------------------------------------------------------------- usage errors

USAGE_ERRORS = [
    (("export", "quickstart", "--top", "0"), "'--top'"),
    (("dashboard", "--port", "0"), "'--port'"),
    (("dashboard", "--port", "99999"), "'--port'"),
    (("study", "start", "x", "--workers", "0"), "'--workers'"),
    (("proxy", "calibrate", "--seeds", "1"), "'--seeds'"),
    (("generate", "--input", "x", "--output", "y", "--tasks", "0"), "'--tasks'"),
    (("generate", "--input", "x", "--output", "y", "--best-of-n", "many"), "'--best-of-n'"),
    (("study", "create"), "Missing argument"),
    (("study", "status", "--bogus"), "--bogus"),
]


@pytest.mark.parametrize(("args", "named"), USAGE_ERRORS, ids=[" ".join(a) for a, _ in USAGE_ERRORS])
def test_a_usage_error_names_the_option_in_one_line_and_exits_2(tmp_path: Path, args: tuple[str, ...], named: str):
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], result.stderr
    assert "Traceback" not in result.stderr and "BadParameter" not in result.stderr
