"""The experiments' figures are drawn for files only: running an experiment inside a notebook must not switch the
notebook's matplotlib backend (its later figures would no longer show) nor leave figures open in pyplot."""

import subprocess
import sys
import textwrap

from rofjax.experiments.report import file_figure


def test_file_figure_gives_axes_as_subplots_does():
    figure, axes = file_figure(2, 3, figsize=(6, 4), squeeze=False, sharey=True)
    assert axes.shape == (2, 3) and tuple(figure.get_size_inches()) == (6, 4)
    _, axis = file_figure()
    assert axis.figure is not None


def test_plotting_an_experiment_keeps_the_backend_and_pyplot_untouched(tmp_path):
    # A fresh interpreter: the backend is process-wide, and switching it here would reach other tests.
    script = textwrap.dedent(f"""
        import matplotlib
        matplotlib.use("svg")                       # stands for a notebook's inline backend
        import matplotlib.image
        import matplotlib.pyplot as plt
        from rofjax.experiments.report import plot_curves
        rows = [{{"curves": {{"loss": [[1, 2.0], [2, 1.5], [3, 1.0]]}}}}, {{"curves": {{"loss": [[1, 2.2], [2, 1.4], [3, 1.1]]}}}}]
        path = plot_curves({str(tmp_path / "curve.png")!r}, {{"a": rows}}, curve="loss", xlabel="step", ylabel="loss",
                           title="t")
        assert matplotlib.image.imread(path).shape[0] > 100
        print(matplotlib.get_backend(), plt.get_fignums())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["svg", "[]"]
