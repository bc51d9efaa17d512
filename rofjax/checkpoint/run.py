"""The one owner of checkpoints on disk: a training run's folder, and parameter trees saved or converted alone.

A run folder (`RunFolder`):

    checkpoints/<step>/{state,data,config}   orbax CheckpointManager (async): train state, grain iterator, config
    best/<step>/{state,config}               the parameters with the best evaluation metric so far
    metrics.jsonl                            one JSON object per logged training step (step, loss, lr, …)
    eval_metrics.jsonl                       one per evaluation
    tensorboard/                             TensorBoard scalars
    backbone.json                            Ladder Side-Tuning: the frozen backbone's checkpoint and fingerprint
                                             (its parameters are not stored here; they are read from there)
    model_config.json, vocab.txt, labels.json   the encoder's config, a copy of the vocabulary and the label set:
                                             with them the run is a usable model without its data
                                             (`rofjax.export`, `rofjax.pipeline`)

Orbax commits a step by renaming its folder, so a process killed mid-save leaves no half checkpoint, and the
latest complete step is what a rerun resumes from.

Layouts understood by `restore_params`:

* `save_params` output: `DIR/params` (an orbax PyTree) and `DIR/model_config.json`;
* a training run's `orbax.checkpoint.CheckpointManager` root, `DIR/<step>/state` whose tree has a `params` key —
  only the parameters are read (fine-tuning from a pretraining checkpoint leaves the optimizer state on disk);
* a bare orbax PyTree folder;
* an exported model folder (`rofjax export`: `model.safetensors` beside `task.json`), so a fine-tuned model can
  start another fine-tuning or be converted.

Restores take target shardings, so a checkpoint written on one mesh is read onto another. Orbax writes into a
temporary folder and renames it when complete, so an interrupted save never looks like a checkpoint.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import linen as nn

from rofjax.checkpoint.tree import CheckpointMismatchError, flatten
from rofjax.models.config import ModelConfig

PARAMS_ITEM = "params"
STATE_ITEM = "state"
DATA_ITEM = "data"
CONFIG_ITEM = "config"
CONFIG_FILE = "model_config.json"
CHECKPOINTS = "checkpoints"
BEST = "best"
METRICS = "metrics.jsonl"
EVAL_METRICS = "eval_metrics.jsonl"
LOCK = ".lock"
BACKBONE_FILE = "backbone.json"
VOCAB_FILE = "vocab.txt"
LABELS_FILE = "labels.json"


class RunLockedError(RuntimeError):
    """Another live process holds the run folder."""


class DiskFullError(OSError):
    """A checkpoint would not fit in the space left where it is written."""


class CheckpointWriteError(OSError):
    """An asynchronous checkpoint write failed (the step was not committed)."""


def save_params(directory: str | os.PathLike, params, config: ModelConfig | None = None, *,
                overwrite: bool = False) -> str:
    """Write `params` (boxed or not, sharded or not) under `directory/params`, and the config beside it."""
    directory = os.path.abspath(os.fspath(directory))
    target = os.path.join(directory, PARAMS_ITEM)
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it.")
    os.makedirs(directory, exist_ok=True)
    params = nn.unbox(params)
    if isinstance(params, dict) and set(params) == {"params"}:
        params = params["params"]
    with ocp.PyTreeCheckpointer() as checkpointer:
        checkpointer.save(target, params, force=overwrite)
    if config is not None:
        config.to_json(os.path.join(directory, CONFIG_FILE))
    return target


def load_model_config(directory: str | os.PathLike) -> ModelConfig:
    """The `model_config.json` of a parameters folder; for a training run's `best/` or `checkpoints/`, the one the
    run wrote beside them."""
    directory = os.fspath(directory)
    for folder in (directory, os.path.dirname(os.path.abspath(directory))):
        if os.path.exists(os.path.join(folder, CONFIG_FILE)):
            return ModelConfig.from_json(os.path.join(folder, CONFIG_FILE))
    return ModelConfig.from_json(os.path.join(directory, CONFIG_FILE))     # names the missing file


def innermost_message(error: BaseException) -> str:
    """The innermost cause's last line: orbax and tensorstore wrap the useful message (a short read, a bad
    manifest) in exceptions whose own text is a multi-line dump of the store's spec."""
    seen = {id(error)}
    while True:
        inner = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
        if inner is None or id(inner) in seen:
            break
        seen.add(id(inner))
        error = inner
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1] if lines else '(no message)'}"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


def sorted_steps(directory: str | os.PathLike) -> list[int]:
    """The complete steps of a CheckpointManager root (orbax names a step folder only once it is complete)."""
    return sorted(ocp.utils.checkpoint_steps(os.fspath(directory)))


def latest_step(directory: str | os.PathLike) -> int | None:
    steps = sorted_steps(directory)
    return steps[-1] if steps else None


def _locate(directory: str, step: int | None) -> tuple[str, str | None]:
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"No checkpoint folder at {directory}.")
    if os.path.isdir(os.path.join(directory, PARAMS_ITEM)):
        return os.path.join(directory, PARAMS_ITEM), None
    if os.path.isdir(os.path.join(directory, STATE_ITEM)):
        return os.path.join(directory, STATE_ITEM), PARAMS_ITEM
    if step is None and not sorted_steps(directory) and (os.path.isdir(os.path.join(directory, BEST))
                                                         or os.path.isdir(os.path.join(directory, CHECKPOINTS))):
        return _locate(RunFolder(directory).params_folder(), None)          # a run folder: its best parameters
    chosen = step if step is not None else latest_step(directory)
    if chosen is not None:
        step_dir = os.path.join(directory, str(chosen))
        if not os.path.isdir(step_dir):
            raise FileNotFoundError(f"{directory} has no step {chosen}; steps: {sorted_steps(directory)}.")
        return _locate(step_dir, None)
    if os.path.exists(os.path.join(directory, "_METADATA")):
        return directory, None
    raise FileNotFoundError(f"{directory} holds no rofjax parameters (expected {PARAMS_ITEM}/, {STATE_ITEM}/, "
                            f"numbered step folders, or an exported model's model.safetensors and task.json).")


def _metadata_tree(checkpointer, path: str):
    metadata = checkpointer.metadata(path)
    metadata = getattr(metadata, "item_metadata", metadata)
    return getattr(metadata, "tree", metadata)


def _url_scheme(text: str) -> str | None:
    scheme, separator, _ = text.partition("://")
    return scheme if separator and "/" not in scheme else None


def is_remote(path: str | os.PathLike) -> bool:
    """Whether `path` is a URL of another file system than the local one (gs://, s3://, …; not file://)."""
    return _url_scheme(os.fspath(path)) not in (None, "file")


def local_path(path: str | os.PathLike, what: str = "path") -> str:
    """`path` as a local absolute path: a plain path, or a `file://` URL. Other URL schemes (gs://, s3://) are refused
    by name rather than read as a local folder called `gs:`: a run folder needs a local file system (its lock, its
    appended logs); mount a bucket (gcsfuse, s3fs) and pass its folder. Inputs may be remote: `readable_path`."""
    text = os.fspath(path)
    scheme = _url_scheme(text)
    if scheme is None:
        return os.path.abspath(text)
    if scheme == "file":
        from urllib.parse import unquote

        return os.path.abspath(unquote(text.partition("://")[2]))
    raise ValueError(f"{what} {text}: a {scheme}:// location cannot be written to as a run or export folder (it needs "
                     f"a local file system for its lock and appended logs); use a local or mounted folder (gcsfuse, "
                     f"s3fs). Model folders, checkpoints and data folders may be read from {scheme}://.")


def remote_cache_root() -> str:
    return os.environ.get("ROFJAX_REMOTE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "rofjax",
                                                                 "remote")


def _remote_listing(source) -> list[tuple[str, int]]:
    """(relative path, size) of every file under `source` (an epath), sorted: what a cached copy must match."""
    files = []

    def visit(folder, prefix):
        for child in folder.iterdir():
            name = f"{prefix}{child.name}"
            if child.is_dir():
                visit(child, name + "/")
            else:
                files.append((name, int(child.stat().length)))

    if source.is_dir():
        visit(source, "")
    else:
        files.append(("", int(source.stat().length)))
    return sorted(files)


def readable_path(path: str | os.PathLike, what: str = "path") -> str:
    """A local path with the contents of `path`, for reading: local paths and `file://` URLs as they are; any other
    URL that `etils.epath` can read (gs://, s3://, …, with gcsfs/s3fs or TensorFlow's file system installed) is
    copied, file or whole folder, into a local cache (`$ROFJAX_REMOTE_CACHE`, default ~/.cache/rofjax/remote) and
    the copy's path returned. The copy is reused while the remote listing (names and sizes) is unchanged, and is
    only put in place once complete, so an interrupted copy is never read."""
    text = os.fspath(path)
    scheme = _url_scheme(text)
    if scheme is None or scheme == "file":
        return local_path(text, what)
    import hashlib
    import shutil

    from etils import epath

    try:
        source = epath.Path(text)
        if not source.exists():
            raise FileNotFoundError(f"{what} {text} does not exist.")
        listing = _remote_listing(source)
    except (FileNotFoundError, ValueError):
        raise
    except Exception as error:                # the file system's own errors: credentials, network, missing gcsfs
        raise ValueError(f"{what} {text} could not be read: {_first_line(error)}") from None
    name = text.rstrip("/").rsplit("/", 1)[-1] or scheme
    target = os.path.join(remote_cache_root(), hashlib.sha256(text.rstrip("/").encode()).hexdigest()[:16], name)
    marker = target + ".listing.json"
    if os.path.exists(target) and os.path.exists(marker):
        with open(marker, encoding="utf-8") as handle:
            if json.load(handle) == [list(item) for item in listing]:
                return target
    partial = f"{target}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        for relative, _ in listing:
            source_file = source / relative if relative else source
            destination = os.path.join(partial, relative) if relative else partial
            os.makedirs(os.path.dirname(destination) or ".", exist_ok=True)
            with source_file.open("rb") as reader, open(destination, "wb") as writer:
                shutil.copyfileobj(reader, writer, 1 << 22)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        if os.path.isfile(partial):
            os.remove(partial)
        raise
    if os.path.isdir(target):
        shutil.rmtree(target)
    elif os.path.exists(target):
        os.remove(target)
    os.replace(partial, target)
    with open(marker + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(listing, handle)
    os.replace(marker + ".tmp", marker)
    return target


def restore_params(directory: str | os.PathLike, *, target=None, shardings=None, step: int | None = None):
    """Read parameters saved by `save_params` or by a training run.

    `target`: a tree of arrays or `jax.ShapeDtypeStruct`s whose structure, shapes and dtypes the result takes
    (a `ShapeDtypeStruct`'s sharding is honoured); `shardings`: a matching tree of `jax.sharding.Sharding`s.
    Without either, the checkpoint's own tree is restored onto the default device. A tree or shape mismatch
    names the parameter.
    """
    local = readable_path(directory, "checkpoint")
    from rofjax.export import TASK_FILE, WEIGHTS_FILE

    if step is None and os.path.isfile(os.path.join(local, WEIGHTS_FILE)) \
            and os.path.isfile(os.path.join(local, TASK_FILE)):
        return _restore_export(os.path.join(local, WEIGHTS_FILE), target, shardings)
    path, key = _locate(local, step)
    _quiet_orbax_tracebacks()
    try:
        return _restore(path, key, target, shardings)
    except (CheckpointMismatchError, FileNotFoundError):
        raise
    except Exception as error:                     # a damaged file: orbax and tensorstore errors vary
        raise ValueError(f"checkpoint {path} could not be read ({innermost_message(error)[:300]}).") from None


def _restore(path: str, key: str | None, target, shardings):
    with ocp.PyTreeCheckpointer() as checkpointer:
        stored = _metadata_tree(checkpointer, path)
        if key is not None:
            if key not in stored:
                raise CheckpointMismatchError(f"{path} has no '{key}' entry; it holds {sorted(stored)}.")
            stored = stored[key]
        if target is None:
            target = jax.tree_util.tree_map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype), stored)
        else:
            target = nn.unbox(target)
            _check_against(stored, target, path)
        if shardings is None:
            default = jax.sharding.SingleDeviceSharding(jax.devices()[0])
            shardings = jax.tree_util.tree_map(lambda t: getattr(t, "sharding", None) or default, target)
        abstract = jax.tree_util.tree_map(
            lambda t, s: jax.ShapeDtypeStruct(tuple(np.shape(t)), jnp.result_type(t), sharding=s), target, shardings)
        item = {key: abstract} if key is not None else abstract
        restored = checkpointer.restore(path, args=ocp.args.PyTreeRestore(
            item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item),
            partial_restore=key is not None))
    return restored[key] if key is not None else restored


def _restore_export(weights: str, target, shardings):
    """The parameters of an exported model folder (`rofjax export`), placed as `restore_params` places a
    checkpoint's."""
    from rofjax.export import load_weights

    params = load_weights(weights)
    if target is not None:
        target = nn.unbox(target)
        _check_against(params, target, weights)
        params = jax.tree_util.tree_map(lambda p, t: np.asarray(p, jnp.result_type(t)), params, target)
        if shardings is None:
            shardings = jax.tree_util.tree_map(lambda t: getattr(t, "sharding", None), target)
    if shardings is None:
        return jax.tree_util.tree_map(jnp.asarray, params)
    return jax.tree_util.tree_map(lambda p, s: jax.device_put(p, s) if s is not None else jnp.asarray(p), params,
                                  shardings)


def _check_against(stored, target, path: str) -> None:
    have = {k: tuple(v.shape) for k, v in flatten(_as_dict(stored)).items()}
    want = {k: tuple(np.shape(v)) for k, v in flatten(_as_dict(target)).items()}
    missing = sorted(set(want) - set(have))
    if missing:
        raise CheckpointMismatchError(f"{path} lacks parameter {missing[0]}"
                                      + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                                      + "; is the checkpoint from a different model or scan_layers setting?")
    extra = sorted(set(have) - set(want))
    if extra:
        raise CheckpointMismatchError(f"{path} holds parameter {extra[0]}"
                                      + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else "")
                                      + " that the target does not have.")
    for name in sorted(want):
        if want[name] != have[name]:
            raise CheckpointMismatchError(f"{path}: parameter {name} is stored with shape {have[name]} but the "
                                          f"target needs {want[name]}.")


def _array_shapes(tree) -> dict[str, tuple]:
    """`{"params/encoder/...": shape}` for each array of a serialised or stored (metadata) pytree."""
    return {"/".join(map(str, path)): tuple(leaf.shape) for path, leaf in ocp.tree.to_flat_dict(tree).items()
            if hasattr(leaf, "shape")}


def _as_dict(tree: Any):
    if isinstance(tree, dict):
        return {k: _as_dict(v) for k, v in tree.items()}
    return tree


class RunFolder:
    """A training run's folder: resume, periodic and best checkpoints, the saved config, and metric logs.

    The loop, `train.predict` and the pipelines reach a run only through this class; nothing else names its
    sub-folders or orbax items.
    """

    def __init__(self, workdir: str | os.PathLike, *, keep: int = 2, best_metric: str | None = None,
                 best_mode: str = "max"):
        self._mirror = None
        if is_remote(workdir):
            # A bucket: the run lives in a local folder mirrored there (`rofjax.checkpoint.mirror`).
            from rofjax.checkpoint.mirror import BucketMirror, staging_folder

            url = os.fspath(workdir)
            self.workdir = staging_folder(url, remote_cache_root())
            self._mirror = BucketMirror(url, self.workdir)
        else:
            self.workdir = local_path(workdir, "--workdir")
        self.keep, self.best_metric, self.best_mode = keep, best_metric, best_mode
        self._manager = self._best = self._lock_handle = None

    # Paths --------------------------------------------------------------------------------------------------------
    def path(self, name: str) -> str:
        return os.path.join(self.workdir, name)

    @property
    def metrics_path(self) -> str:
        return self.path(METRICS)

    @property
    def eval_metrics_path(self) -> str:
        return self.path(EVAL_METRICS)

    # Writing (training) ---------------------------------------------------------------------------------------
    def claim(self) -> RunFolder:
        """Lock the folder against a second run (`open` does it too; a run claims first to refuse at once)."""
        if os.path.exists(self.workdir) and not os.path.isdir(self.workdir):
            raise FileExistsError(f"--workdir {self.workdir} is a file, not a folder.")
        os.makedirs(self.workdir, exist_ok=True)
        if self._lock_handle is None:
            self._lock()
        return self

    def open(self) -> RunFolder:
        """Take the folder for this run: lock it against a second run, check it can be written, open the
        checkpoint managers."""
        self.claim()
        if self._mirror is not None:
            if jax.process_count() > 1:
                raise ValueError(f"--workdir {self._mirror.url}: a run mirrored to a bucket is written by one "
                                 f"process; with {jax.process_count()} processes use a folder they all see (a "
                                 f"mounted bucket: gcsfuse, s3fs; or a shared file system).")
            self._mirror.pull()
        for name in (CHECKPOINTS, BEST):
            _check_writable(self.path(name))
        self._open_managers()
        return self

    def fetch(self) -> RunFolder:
        """For reading a run kept in a bucket (prediction): bring its local copy up to date. Nothing for a local run."""
        if self._mirror is not None:
            os.makedirs(self.workdir, exist_ok=True)
            self._lock()
            try:
                self._mirror.pull()
            finally:
                self._unlock()
        return self

    def publish(self, path: str) -> str:
        """Copy a file written into the run folder (a prediction file) to the bucket of a mirrored run; returns where
        it is kept."""
        if self._mirror is None:
            return path
        self._mirror.upload(path)
        return f"{self._mirror.url}/{os.path.relpath(path, self.workdir)}"

    def _push(self) -> None:
        """A mirrored run: the completed saves and the logs so far, to the bucket (the caller has waited for the
        asynchronous save)."""
        if self._mirror is not None and jax.process_index() == 0:
            self._mirror.push()

    def _unlock(self) -> None:
        if self._lock_handle is not None:
            self._lock_handle.close()               # releases the lock
            self._lock_handle = None

    def _lock(self) -> None:
        """An exclusive lock on `.lock` held while the run lives: the kernel drops it when the process dies, so a
        stale lock never blocks; a live holder is named. Only process 0 locks (hosts share the folder)."""
        if jax.process_index() != 0:
            return
        path = self.path(LOCK)
        handle = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunLockedError(f"{self.workdir} is in use by {holder}; wait for that run to end or choose "
                                 f"another --workdir.") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on host {socket.gethostname()}\n")
        handle.flush()
        self._lock_handle = handle

    def _open_managers(self) -> None:
        _quiet_orbax_tracebacks()
        self._manager = ocp.CheckpointManager(
            self.path(CHECKPOINTS), item_names=(STATE_ITEM, DATA_ITEM, CONFIG_ITEM),
            options=ocp.CheckpointManagerOptions(max_to_keep=self.keep, create=True,
                                                 enable_async_checkpointing=True))
        metric = self.best_metric
        self._best = ocp.CheckpointManager(
            self.path(BEST), item_names=(STATE_ITEM, CONFIG_ITEM),
            options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True, best_fn=lambda m: m[metric],
                                                 best_mode=self.best_mode, enable_async_checkpointing=False))

    def latest_step(self) -> int | None:
        return self._manager.latest_step() if self._manager is not None else latest_step_or_none(
            self.path(CHECKPOINTS))

    def restore(self, abstract_state, iterator) -> Any | None:
        """The train state of the latest complete checkpoint (onto `abstract_state`'s shardings), with `iterator`
        moved to where it was; `None` when there is none. A step that fails to restore (a truncated or damaged
        file) is moved aside to `checkpoints/unreadable-<step>` — never deleted — and the step before it is tried.
        Metric rows logged after the restored step are dropped, so each step appears once in the logs."""
        import grain

        while (step := self._manager.latest_step()) is not None:
            # Read from the metadata before restoring: orbax would otherwise start reading every array and log
            # each failed read of another model's shapes.
            if shapes := self._shape_mismatch(step, abstract_state):
                self._refuse(step, f"was saved by a run of another model or optimiser ({shapes})")
            # Before restoring too: worker processes (data.workers) take a stored position without a word and
            # would fail only at the first batch, after the state was restored.
            if feeding := self._iterator_mismatch(step, iterator):
                self._refuse(step, f"holds the data position of another input pipeline ({feeding})")
            try:
                restored = self._manager.restore(step, args=ocp.args.Composite(**{
                    STATE_ITEM: ocp.args.PyTreeRestore(
                        item=abstract_state, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_state)),
                    DATA_ITEM: grain.checkpoint.CheckpointRestore(iterator)}))
            except Exception as error:                   # orbax, tensorstore and pytree errors differ
                aside = self._move_aside(step)
                # The innermost cause names the tensor and the short read; the outer ones dump the store spec.
                cause = innermost_message(error)[:300] if error.__cause__ or error.__context__ else _first_line(error)
                warnings.warn(f"{self.path(CHECKPOINTS)}/{step} could not be restored ({cause}); moved it to "
                              f"{aside} and trying the step before it.", stacklevel=2)
                continue
            self.truncate_logs(step)
            return restored[STATE_ITEM]
        # No checkpoint committed (a run killed before its first save), or none readable: start over, dropping what
        # was logged.
        if os.path.isdir(self.path(CHECKPOINTS)) and any(name.startswith("unreadable-")
                                                         for name in os.listdir(self.path(CHECKPOINTS))):
            warnings.warn(f"no checkpoint in {self.path(CHECKPOINTS)} could be restored; the run starts again from "
                          f"step 0.", stacklevel=2)
        self.truncate_logs(0)
        return None

    def _refuse(self, step: int, what: str) -> None:
        # Another model, optimiser or input pipeline, not damage: the checkpoints stay where they are.
        raise CheckpointMismatchError(f"{self.path(CHECKPOINTS)}/{step} {what}; rerun with the config it was trained "
                                      f"with, or choose another --workdir.")

    def _shape_mismatch(self, step: int, abstract_state) -> str | None:
        """How the stored train state differs from the one this run needs, naming the first tensor that does
        (`None` when they agree, or when the stored metadata cannot be read: damage, not a different model).
        Paths are compared, not just shapes: an optimiser whose state has the same shapes in another structure
        (clipping turned on or off, AdamW for LAMB) is another run's checkpoint, not a damaged one."""
        try:
            with ocp.PyTreeCheckpointer() as checkpointer:
                stored = _metadata_tree(checkpointer, self.path(os.path.join(CHECKPOINTS, str(step), STATE_ITEM)))
            have = _array_shapes(stored)
        except Exception:                                  # unreadable metadata is damage
            return None
        if not have:                                       # no arrays listed: the metadata itself is damaged
            return None
        want = _array_shapes(ocp.tree.serialize_tree(abstract_state, keep_empty_nodes=True))

        def first(names):                                  # a parameter's name tells the user most
            return min(names, key=lambda name: (not name.startswith("params/"), name))

        reshaped = [name for name in want if name in have and have[name] != want[name]]
        if reshaped:
            name = first(reshaped)
            return f"{name} is stored with shape {have[name]} where {want[name]} is needed"
        missing, extra = set(want) - set(have), set(have) - set(want)
        if not missing and not extra:
            return None
        named = ([f"this run needs {first(missing)}"] if missing else []) + (
            [f"the checkpoint holds {first(extra)}"] if extra else [])
        unnamed = len(missing) + len(extra) - len(named)
        return ", ".join(named) + (f"; {unnamed} more paths differ" if unnamed else "")

    def _iterator_mismatch(self, step: int, iterator) -> str | None:
        """How the stored iterator position differs in kind from what `iterator` takes (`None` when it fits or
        cannot be read — damage). Positions saved by worker processes (`data.workers`) list one state per worker."""
        name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
        try:
            with open(self.path(os.path.join(CHECKPOINTS, str(step), DATA_ITEM, name)), encoding="utf-8") as f:
                stored = json.load(f)
            wanted = json.loads(json.dumps(iterator.get_state()))     # as stored: tuples as lists, keys as text
        except Exception:                                  # unreadable is damage
            return None
        if not isinstance(stored, dict) or not isinstance(wanted, dict):
            return None

        def workers(state):
            return len(state.get("iterators_in_use_indices", ()))

        def layout(state):
            """The keys of a position at every depth (the stages of the pipeline that saved it), not its values. A
            dict keyed by numbers (grain's states of workers yet to start) holds values, not stages."""
            if isinstance(state, dict) and not all(key.isdigit() for key in state):
                return {key: layout(value) for key, value in state.items()}
            if isinstance(state, list):
                return [layout(value) for value in state]
            return None

        def first_difference(a, b, path=""):
            """Where two layouts first part, and the keys each has there."""
            if isinstance(a, dict) and isinstance(b, dict):
                if set(a) != set(b):
                    return f"at {path.rstrip('/') or 'its top'}, saved with {sorted(a)}, this run has {sorted(b)}"
                for key in sorted(a):
                    if found := first_difference(a[key], b[key], f"{path}{key}/"):
                        return found
            elif isinstance(a, list) and isinstance(b, list):
                for index, (x, y) in enumerate(zip(a, b)):
                    if found := first_difference(x, y, f"{path}{index}/"):
                        return found
            return None if a == b else f"{path.rstrip('/') or 'the position'} differs"

        if layout(stored) == layout(wanted):
            return None
        if workers(stored) != workers(wanted):
            return (f"saved with config.data.workers={workers(stored)}, this run has config.data.workers="
                    f"{workers(wanted)}")
        return (f"{first_difference(layout(stored), layout(wanted))}: data.pack, data.long_documents or the task "
                f"differ; masked-LM runs begun before long documents were chunked resume with "
                f"--config.data.long_documents=cut")

    def _move_aside(self, step: int) -> str:
        if jax.process_index() == 0:
            aside = self.path(os.path.join(CHECKPOINTS, f"unreadable-{step}"))
            suffix = 0
            while os.path.exists(aside + (f".{suffix}" if suffix else "")):
                suffix += 1
            aside += f".{suffix}" if suffix else ""
            os.replace(self.path(os.path.join(CHECKPOINTS, str(step))), aside)
        else:
            aside = "unreadable-<step>"
        self._manager.close()
        self._best.close()
        self._open_managers()
        return aside

    def save(self, step: int, state, iterator, config, *, force: bool = False) -> None:
        """Checkpoint `step` (asynchronously): the train state, the iterator's position and the config. A folder
        that became unwritable is reported now, not when the asynchronous write times out."""
        import grain

        _check_writable(self.path(CHECKPOINTS))
        _check_free_space(self.path(CHECKPOINTS), _bytes_written(state))
        # The previous save must have completed (orbax waits for it too): a write that failed in the background
        # is reported here, naming the folder, before another starts.
        self._finished(self._manager)
        if self._mirror is not None:
            self._push()                            # the previous save is complete: mirror it before the next
        self._manager.save(step, args=ocp.args.Composite(**{
            STATE_ITEM: ocp.args.PyTreeSave(state), DATA_ITEM: grain.checkpoint.CheckpointSave(iterator),
            CONFIG_ITEM: ocp.args.JsonSave(_config_json(config))}), force=force)

    def _finished(self, manager) -> None:
        """Wait for `manager`'s asynchronous save; its failure (a full disk, a folder gone) as one error naming
        the folder. A failed step is never committed, so the steps before it are what a rerun resumes from."""
        try:
            manager.wait_until_finished()
        except Exception as error:                   # orbax/tensorstore raise ValueError, OSError, RuntimeError
            folder = os.fspath(manager.directory)
            raise CheckpointWriteError(f"a checkpoint could not be written to {folder}: {_first_line(error)[:400]}. "
                                       f"The steps saved before it are intact: free space or repair the folder, "
                                       f"then rerun to resume from them.") from None

    def save_model_config(self, model_config: ModelConfig) -> None:
        """`model_config.json` beside `best/` and `checkpoints/`, so the run's parameters can be converted or
        loaded without its training config."""
        if jax.process_index() == 0:
            tmp = self.path(CONFIG_FILE + ".tmp")
            model_config.to_json(tmp)
            os.replace(tmp, self.path(CONFIG_FILE))

    def check_best_metric(self, metrics: dict) -> None:
        if self.best_metric not in metrics:
            raise KeyError(f"config.eval.best_metric={self.best_metric!r} is not among the evaluation metrics "
                           f"{sorted(metrics)}; the checkpoints are kept, and a rerun with one of these evaluates "
                           f"again.")

    def save_best(self, step: int, params, config, metrics: dict) -> None:
        """Keep `params` under best/ when `metrics[best_metric]` is the best so far."""
        self.check_best_metric(metrics)
        self._best.save(step, args=ocp.args.Composite(**{
            STATE_ITEM: ocp.args.PyTreeSave({PARAMS_ITEM: params}),
            CONFIG_ITEM: ocp.args.JsonSave(_config_json(config))}), metrics=metrics)

    def wait(self) -> None:
        if self._manager is not None:
            self._finished(self._manager)
            self._push()

    def close(self) -> None:
        failed = None
        try:
            opened = self._manager is not None
            for manager in (self._manager, self._best):
                if manager is not None:
                    try:
                        self._finished(manager)
                    except CheckpointWriteError as error:
                        failed = failed or error
                    manager.close()
            if opened and failed is None:
                self._push()
        finally:
            self._manager = self._best = None
            self._unlock()
        if failed is not None:
            raise failed

    def eval_row(self, step: int) -> dict | None:
        """The evaluation logged at `step`, if any (a finished run rerun reports it instead of evaluating again)."""
        if not os.path.exists(self.eval_metrics_path):
            return None
        found = None
        with open(self.eval_metrics_path, encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    break
                if row.get("step") == step:
                    found = row
        return found

    def best_row(self) -> dict | None:
        """The evaluation row of the parameters under best/, if any."""
        step = latest_step_or_none(self.path(BEST))
        return self.eval_row(step) if step is not None else None

    def record_task_inputs(self, vocab_path: str, labels) -> None:
        """Keep a copy of the vocabulary and the label set (`DatasetSpec.labels`) beside the checkpoints."""
        from rofjax.export import labels_to_json

        if jax.process_index() != 0:
            return
        with open(vocab_path, "rb") as f:
            vocab = f.read()
        labels_text = json.dumps({"labels": labels_to_json(labels)}, ensure_ascii=False, indent=1) + "\n"
        for name, content in ((VOCAB_FILE, vocab), (LABELS_FILE, labels_text.encode("utf-8"))):
            target = self.path(name)
            if os.path.exists(target):
                with open(target, "rb") as f:
                    if f.read() == content:
                        continue
            with open(target + ".tmp", "wb") as f:
                f.write(content)
            os.replace(target + ".tmp", target)

    def task_inputs(self) -> tuple[str, Any] | None:
        """`(vocabulary path, label set)` recorded by `record_task_inputs`; `None` for runs made before."""
        from rofjax.export import labels_from_json

        vocab, labels = self.path(VOCAB_FILE), self.path(LABELS_FILE)
        if not os.path.exists(vocab) and not os.path.exists(labels):
            return None
        for path in (vocab, labels):                       # one of the pair kept: the other was lost, not never made
            if not os.path.exists(path):
                raise FileNotFoundError(f"{path} is missing from the run folder (its {VOCAB_FILE} and {LABELS_FILE} "
                                        f"are written together); restore it from a copy of the run.")
        with open(labels, encoding="utf-8") as f:
            return vocab, labels_from_json(json.load(f)["labels"])

    def truncate_logs(self, last_step: int) -> None:
        for path in (self.metrics_path, self.eval_metrics_path):
            _truncate_jsonl(path, last_step)

    # Reading (prediction, fine-tuning) ------------------------------------------------------------------------
    def saved_config(self) -> dict | None:
        """The training config saved with the latest checkpoint (or the best one), as a dict; `None` if none."""
        for root in (self.path(CHECKPOINTS), self.path(BEST)):
            step = latest_step_or_none(root)
            path = os.path.join(root, str(step), CONFIG_ITEM, "metadata") if step is not None else None
            if path is not None and os.path.exists(path):
                with open(path, encoding="utf-8") as f:
                    return json.load(f)
        return None

    def params_folder(self) -> str:
        """Where the parameters to use are: best/ when an evaluation kept some, else the latest checkpoint."""
        best = self.path(BEST)
        if latest_step_or_none(best) is not None:
            return best
        if latest_step_or_none(self.path(CHECKPOINTS)) is not None:
            return self.path(CHECKPOINTS)
        raise FileNotFoundError(f"{self.workdir} holds no checkpoint (no {BEST}/ or {CHECKPOINTS}/ step).")

    def restore_params(self, *, target=None, shardings=None):
        return restore_params(self.params_folder(), target=target, shardings=shardings)

    # Ladder Side-Tuning: the frozen backbone a run was built on --------------------------------------------------
    def backbone(self) -> dict | None:
        """`{"checkpoint": path, "fingerprint": digest}` of the backbone this run was trained on, if any."""
        path = self.path(BACKBONE_FILE)
        if not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    def record_backbone(self, checkpoint: str, digest: str) -> None:
        """Remember the backbone of this run; refuse another one once the run has checkpoints or best parameters
        (their side network and head were trained on it)."""
        recorded = self.backbone()
        trained = latest_step_or_none(self.path(CHECKPOINTS)) is not None or \
            latest_step_or_none(self.path(BEST)) is not None
        if recorded is not None and trained and recorded["fingerprint"] != digest:
            raise CheckpointMismatchError(
                f"{self.workdir} was trained on the backbone {recorded['checkpoint']} (fingerprint "
                f"{recorded['fingerprint']}); config.train.init_checkpoint={checkpoint} holds other parameters "
                f"(fingerprint {digest}). Rerun with the backbone it was built on, or choose another --workdir.")
        if jax.process_index() == 0 and (recorded is None or recorded["fingerprint"] != digest
                                         or recorded["checkpoint"] != os.path.abspath(checkpoint)):
            tmp = self.path(BACKBONE_FILE + ".tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump({"checkpoint": os.path.abspath(checkpoint), "fingerprint": digest}, f, indent=2)
                f.write("\n")
            os.replace(tmp, self.path(BACKBONE_FILE))

    def attach_backbone(self, params: dict) -> dict:
        """A Ladder Side-Tuning run's stored parameters (side network and head) with the backbone it was trained on
        put back in, after checking that the backbone checkpoint still holds the same parameters."""
        from rofjax.models.ladder import ENCODER, fingerprint, merge_backbone

        recorded = self.backbone()
        if recorded is None:
            raise FileNotFoundError(f"{self.workdir} has no {BACKBONE_FILE}: it does not say which backbone its "
                                    f"side network was trained on.")
        restored = restore_params(recorded["checkpoint"])
        encoder = restored.get(ENCODER, restored)
        side_keys = set(params.get(ENCODER, {}))
        frozen = {ENCODER: {k: v for k, v in encoder.items() if k in ("embeddings", "transformer")
                            and k not in side_keys}}
        digest = fingerprint(frozen)
        if digest != recorded["fingerprint"]:
            raise CheckpointMismatchError(f"the backbone checkpoint {recorded['checkpoint']} changed since "
                                          f"{self.workdir} was trained on it (fingerprint {digest}, recorded "
                                          f"{recorded['fingerprint']}).")
        return merge_backbone(params, frozen)


def latest_step_or_none(directory: str) -> int | None:
    return latest_step(directory) if os.path.isdir(directory) else None


def _config_json(config) -> dict:
    return json.loads(config.to_json()) if hasattr(config, "to_json") else dict(config)


def _truncate_jsonl(path: str, last_step: int) -> None:
    """Keep one row per step up to `last_step` (the last one logged for it, as a rerun logs a step again), in step
    order; a line cut by a kill ends the file there."""
    if not os.path.exists(path):
        return
    rows: dict[int, str] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                step = json.loads(line).get("step", 0)
            except json.JSONDecodeError:
                break
            if step <= last_step:
                rows[step] = line if line.endswith("\n") else line + "\n"
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(rows[step] for step in sorted(rows))
    os.replace(tmp, path)


def _check_writable(folder: str) -> None:
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, f".write-test-{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as error:
        raise PermissionError(f"cannot write checkpoints to {folder}: {error.strerror or error}.") from None


class _OneLineOrbaxErrors:
    """Orbax logs a failed background write once per thread, each with its full traceback (hundreds of lines for
    one full disk); the run reports the failure itself (`CheckpointWriteError`), so those log records keep their
    first line only. Its warning that a step's `state/` has no `_CHECKPOINT_METADATA` (that file sits one folder
    up, where the manager wrote it) is dropped: reading a step's parameters alone is how export and prediction work."""

    def filter(self, record) -> bool:
        if f"{os.sep}orbax{os.sep}" not in (record.pathname or ""):
            return True
        if record.levelno >= 40:
            text = record.getMessage().strip()
            record.msg, record.args = (text.splitlines() or [""])[0][:300], ()
            record.exc_info = record.exc_text = record.stack_info = None
        elif str(record.msg).startswith("Metadata file does not exist"):
            return False
        return True


def _quiet_orbax_tracebacks() -> None:
    import logging

    logger = logging.getLogger("absl")
    if not any(isinstance(f, _OneLineOrbaxErrors) for f in logger.filters):
        logger.addFilter(_OneLineOrbaxErrors())


# Room kept free beyond the arrays themselves: orbax's metadata, the data iterator and the file system's own needs.
_SAVE_HEADROOM = 64 << 20


def _bytes_written(tree) -> int:
    """About what this process writes to checkpoint `tree`: its share of every array."""
    total = sum(int(getattr(leaf, "nbytes", 0) or 0) for leaf in jax.tree_util.tree_leaves(tree))
    return total // max(1, jax.process_count())


def _check_free_space(folder: str, needed: int) -> None:
    """Refuse a save that cannot fit, before anything is written: an asynchronous write that runs out of space
    fails in the background, and is only reported at the next save or at the end of the run."""
    import shutil

    free = shutil.disk_usage(folder).free
    if free < needed + _SAVE_HEADROOM:
        raise DiskFullError(f"not enough space to checkpoint into {folder}: a save needs about "
                            f"{(needed + _SAVE_HEADROOM) / 2**20:,.0f} MiB and {free / 2**20:,.0f} MiB are free. Free "
                            f"some space (or lower train.keep_checkpoints) and rerun: the run resumes from its last "
                            f"checkpoint.")


def check_vocabulary_matches(checkpoint: str, vocab_path: str) -> None:
    """Refuse to start from `checkpoint` when the vocabulary kept beside it (a run folder's or an exported model's
    vocab.txt, found at most two folders up) is not the one the task tokenizes with: token ids would index other
    rows of the embedding table, and nothing else would fail."""
    from rofjax.data.tokenizer import read_vocab

    if is_remote(checkpoint) or not os.path.exists(checkpoint):
        return
    folder = os.path.abspath(checkpoint)
    for _ in range(3):
        beside = os.path.join(folder, VOCAB_FILE)
        if os.path.isfile(beside):
            break
        folder = os.path.dirname(folder)
    else:
        return
    if os.path.abspath(beside) == os.path.abspath(vocab_path):
        return
    kept, used = list(read_vocab(beside)), list(read_vocab(vocab_path))
    if kept == used:
        return
    line = next((i for i, (a, b) in enumerate(zip(kept, used)) if a != b), min(len(kept), len(used)))
    differs = (f"line {line + 1}: {kept[line]!r} against {used[line]!r}" if line < min(len(kept), len(used)) else
               f"{len(kept)} tokens against {len(used)}")
    raise ValueError(f"config.train.init_checkpoint={checkpoint!r} was trained with the vocabulary {beside}, and this "
                     f"run tokenizes with {vocab_path} ({differs}): token ids would not match its embeddings. Set "
                     f"config.data.vocab_path={beside}.")


def load_encoder(path: str, params: dict) -> dict:
    """`params` with its encoder replaced by the encoder of the checkpoint at `path` (a rofjax run, a converted
    checkpoint or a pre-training run), each array placed like the one it replaces; a missing parameter or a shape
    mismatch names the first parameter concerned. A Ladder Side-Tuning side network (`encoder/side`) is not part
    of the backbone and is left as it is."""
    try:
        restored = restore_params(path)
    except (FileNotFoundError, CheckpointMismatchError):
        raise
    except Exception as error:                            # a damaged checkpoint: orbax/tensorstore errors vary
        cause = _first_line(error)
        raise ValueError(f"config.train.init_checkpoint={path!r} could not be read ({cause}).") from None
    encoder_params = restored.get("encoder", restored)
    target = params["encoder"] if "encoder" in params else params
    target = {k: v for k, v in target.items() if k != "side"}
    have = {k: np.shape(v) for k, v in flatten(_as_dict(encoder_params)).items()}
    want = {k: tuple(v.shape) for k, v in flatten(_as_dict(target)).items()}
    missing = sorted(set(want) - set(have))
    if missing:
        raise ValueError(f"{path}: the encoder parameter {missing[0]} is missing"
                         + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                         + "; check model.preset, model.num_layers and model.scan_layers against the checkpoint.")
    extra_layers = sorted(k for k in encoder_params if k.startswith("layers") and k not in target)
    if extra_layers:
        raise ValueError(f"{path}: the checkpoint's encoder has {extra_layers[0]}, which the model has no room for; "
                         f"check model.num_layers against the checkpoint.")
    for name in sorted(want):
        if tuple(have[name]) != want[name]:
            raise ValueError(f"{path}: encoder parameter {name} has shape {tuple(have[name])} but the model needs "
                             f"{want[name]}; check model.preset and the vocabulary.")
    loaded = {key: jax.tree_util.tree_map(lambda s, t: jax.device_put(np.asarray(s, t.dtype), t.sharding),
                                          encoder_params[key], value) for key, value in target.items()}
    if "encoder" in params:
        return {**params, "encoder": {**params["encoder"], **loaded}}
    return {**params, **loaded}
