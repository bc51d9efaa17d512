"""The notebooks run top to bottom at toy size (ROFJAX_SMOKE=1), and what is committed is what their sources give.

Each notebook gets a test class of its own, so that xdist spreads the notebooks over its workers.
"""

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("notebooks_build", ROOT / "notebooks" / "build.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)

pytest.importorskip("nbclient")
pytest.importorskip("jupytext")


def _cells(nb, kind):
    return [cell.source.strip() for cell in nb.cells if cell.cell_type == kind]


def _outputs(nb, mime):
    return [out for cell in nb.cells for out in cell.get("outputs", []) if mime in out.get("data", {})]


class _Notebook:
    source: pathlib.Path

    def test_runs_top_to_bottom_at_smoke_size(self, tmp_path):
        nb = build.execute(build.read(self.source), smoke=True, work=str(tmp_path / "runs"), timeout=600)
        errors = [out for cell in nb.cells for out in cell.get("outputs", []) if out.output_type == "error"]
        assert not errors
        assert _outputs(nb, "image/png"), "the notebook drew no figure"

    def test_committed_notebook_is_its_source_run_in_full(self):
        import nbformat

        committed_path = self.source.with_suffix(".ipynb")
        assert committed_path.exists(), f"run `python notebooks/build.py {self.source.stem[:2]}` and commit it"
        committed, source = nbformat.read(committed_path, as_version=4), build.read(self.source)
        assert _cells(committed, "code") == _cells(source, "code"), "the .ipynb is stale: rebuild it"
        assert _cells(committed, "markdown") == _cells(source, "markdown"), "the .ipynb is stale: rebuild it"
        code = [cell for cell in committed.cells if cell.cell_type == "code"]
        assert all(cell.execution_count is not None for cell in code), "committed without running every cell"
        assert not [out for cell in code for out in cell.outputs if out.output_type == "error"]
        assert _outputs(committed, "image/png"), "no figure in the committed notebook"
        assert committed.metadata.get("rofjax", {}).get("smoke") is False, "built at smoke size"
        assert build.machine_specific(committed) == []

    def test_opens_with_its_colab_badge_and_installs_only_where_needed(self):
        nb = build.read(self.source)
        assert nb.cells[0].cell_type == "markdown" and build.badge(self.source) in nb.cells[0].source
        install = nb.cells[1].source
        assert f"rofjax[notebooks] @ git+{build.repository_url()}" in install
        assert 'importlib.util.find_spec("rofjax") is None' in install


for _source in build.sources():
    _name = f"TestNotebook{_source.stem}"
    globals()[_name] = type(_name, (_Notebook,), {"source": _source})


def test_every_notebook_is_listed_in_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert build.sources(), "no notebooks"
    for source in build.sources():
        assert f"notebooks/{source.stem}.ipynb" in readme, f"{source.stem} is not in the README"
