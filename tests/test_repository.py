"""Repository contracts: CI runs what the README says, and the light imports stay light."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _readme_test_command():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = lines.index("```bash")
    return lines[start + 1].strip()


def test_ci_runs_the_readme_test_command():
    command = _readme_test_command()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert command in ci_lines, f"README test command {command!r} is not a line of .ci/run"


def test_nn_and_losses_import_neither_tensorflow_nor_torch():
    code = (
        "import sys, rofjax.nn, rofjax.losses\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'torch'))\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "", f"heavy modules imported: {out.stdout.strip()}"
