"""Run the notebooks top to bottom and write what they show.

Each `NN_name.py` here (jupytext's percent format: the file to edit and review) is executed in a fresh kernel and
written, outputs included, to `NN_name.ipynb` (the file GitHub and Colab show):

    python notebooks/build.py                  # every notebook at full size, .ipynb files written
    python notebooks/build.py 03 05            # only these
    python notebooks/build.py --smoke          # ROFJAX_SMOKE=1: tiny sizes, nothing written (what the tests run)

The kernel starts in this folder (as Jupyter starts it beside the notebook); a notebook's runs go to
`$ROFJAX_WORK`, here `runs/NN_name/` (git-ignored), emptied before it starts. A built notebook may not show anything of the machine that built it (absolute paths, the
host's name): the build refuses to write one that does.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import shutil
import socket
import sys
import tempfile
import time
import tomllib

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
SOURCE_NAME = re.compile(r"^\d\d_[a-z0-9_]+\.py$")
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"


def sources() -> list[pathlib.Path]:
    return sorted(p for p in HERE.iterdir() if SOURCE_NAME.match(p.name))


def repository_url() -> str:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["urls"]["Repository"].rstrip("/")


def colab_url(source: pathlib.Path, branch: str = "main") -> str:
    """Colab opens a notebook straight from GitHub: colab.research.google.com/github/OWNER/REPO/blob/BRANCH/PATH."""
    owner_repo = repository_url().removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{owner_repo}/blob/{branch}/notebooks/{source.stem}.ipynb"


def badge(source: pathlib.Path) -> str:
    return f"[![Open In Colab]({BADGE_IMAGE})]({colab_url(source)})"


def read(source: pathlib.Path):
    import jupytext

    nb = jupytext.read(source)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata.pop("jupytext", None)          # the pairing is by name; its metadata would only add noise
    return nb


def execute(nb, *, smoke: bool, work: str, timeout: int = 1800):
    """Runs `nb` in place in a fresh kernel started in this folder; raises on the first failing cell."""
    import nbclient

    env = dict(os.environ, ROFJAX_WORK=work, PYTHONWARNINGS="ignore")
    env.pop("ROFJAX_SMOKE", None)
    if smoke:
        env["ROFJAX_SMOKE"] = "1"
    env.setdefault("JAX_PLATFORMS", "cpu")     # a TPU library installed on a CPU machine would only print noise
    # A notebook sees the devices a runtime has (one CPU on Colab), not the eight the tests simulate: sharding a
    # tiny model eight ways only costs compile time. 05 asks for its own simulated devices.
    env["XLA_FLAGS"] = " ".join(flag for flag in env.get("XLA_FLAGS", "").split()
                                if not flag.startswith("--xla_force_host_platform_device_count"))
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                                     resources={"metadata": {"path": str(HERE)}})
    client.execute(env=env)
    return nb


def output_texts(nb):
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                yield index, output.get("text", "")
            elif output.get("output_type") == "error":
                yield index, "\n".join(output.get("traceback", []))
            for kind, value in output.get("data", {}).items():
                if kind.startswith("text/"):
                    yield index, value if isinstance(value, str) else "".join(value)


def machine_specific(nb, extra: tuple[str, ...] = ()) -> list[str]:
    """What in `nb`'s outputs names the machine that ran it: absolute paths and the host's name."""
    home = os.path.expanduser("~")
    words = {str(ROOT), str(HERE), home, tempfile.gettempdir() + "/", sys.prefix, *extra}
    words = {w for w in words if w and w not in ("/", ".")}
    host = socket.gethostname()
    found = []
    for index, text in output_texts(nb):
        for word in sorted(words):
            if word in text:
                found.append(f"cell {index}: {word!r}")
        if host and re.search(rf"(?<![\w.-]){re.escape(host)}(?![\w-])", text):      # the whole name only
            found.append(f"cell {index}: {host!r}")
        for match in re.finditer(r"(?<![\w.:/])/(?:home|Users|tmp|work|root|content|private|var/folders)/\S*", text):
            found.append(f"cell {index}: {match.group(0)!r}")
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="notebook numbers or names (default: all)")
    parser.add_argument("--smoke", action="store_true", help="ROFJAX_SMOKE=1, and write nothing")
    parser.add_argument("--work", default="runs", help="where the notebooks' runs go (relative to notebooks/)")
    args = parser.parse_args(argv)
    chosen = [s for s in sources() if not args.names or any(s.stem.startswith(n) for n in args.names)]
    if not chosen:
        parser.error(f"no notebook matches {args.names}; there are {[s.stem for s in sources()]}")
    import nbformat

    for source in chosen:
        start = time.time()
        # Each notebook starts from nothing, as in a fresh runtime: a run left from an earlier build would resume.
        work = os.path.join(args.work, source.stem)
        shutil.rmtree(HERE / work, ignore_errors=True)
        nb = execute(read(source), smoke=args.smoke, work=work)
        leaks = [] if args.smoke else machine_specific(nb)
        if leaks:
            kept = HERE / work / f"{source.stem}.ipynb"          # to look at, never committed (runs/ is ignored)
            nbformat.write(nb, kept)
            print(f"{source.name}: its outputs name this machine: {'; '.join(leaks[:10])}; not written "
                  f"(the run's notebook is in {os.path.relpath(kept)})", file=sys.stderr)
            return 1
        if not args.smoke:
            nb.metadata["rofjax"] = {"smoke": False}
            nbformat.write(nb, source.with_suffix(".ipynb"))
        print(f"{source.stem}: {time.time() - start:.0f} s{'' if args.smoke else ' → ' + source.stem + '.ipynb'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
