"""How the programs end on an error a user can fix: one line naming what is wrong, exit code 2, no traceback."""

import os
import sys

from absl import app

USER_ERRORS = (ValueError, KeyError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
               PermissionError)


def _drop_abandoned_orbax_reads() -> None:
    """A restore refused midway (a checkpoint of another model) or a failed save leaves orbax's pending coroutines
    to the garbage collector, and tensorstore's callbacks to find orbax's event loop closed; Python prints each of
    them as a traceback (hundreds of lines around the one error that matters). Those two kinds are dropped."""
    previous = sys.unraisablehook
    if getattr(previous, "drops_orbax_reads", False):
        return

    def hook(unraisable):
        code = getattr(unraisable.object, "cr_code", None)
        if code is not None and f"{os.sep}orbax{os.sep}" in code.co_filename:
            return
        if unraisable.object is None and isinstance(unraisable.exc_value, RuntimeError) \
                and str(unraisable.exc_value) == "Event loop is closed":
            return
        previous(unraisable)

    hook.drops_orbax_reads = True
    sys.unraisablehook = hook


def report_user_errors(fn):
    """Run `fn()`; an error a user can fix ends the program with one `error:` line and exit code 2."""
    _drop_abandoned_orbax_reads()
    from rofjax.checkpoint.mirror import MirrorError
    from rofjax.checkpoint.run import CheckpointWriteError, DiskFullError, RunLockedError

    try:
        return fn()
    except (*USER_ERRORS, RunLockedError, DiskFullError, CheckpointWriteError, MirrorError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    except Exception as error:
        first = (str(error).strip().splitlines() or [""])[0]
        if "RESOURCE_EXHAUSTED" not in first:
            raise
        # The device (or host) cannot hold this step: a size to change, not a bug to trace.
        print(f"error: out of memory: {first[:300].rstrip('.')}. Lower train.batch_size or data.max_length, or use "
              f"model.remat_policy / more devices (rofjax compile --topology … says what fits before a run).",
              file=sys.stderr)
        sys.exit(2)


def bundled_configs() -> str:
    import configs

    return os.path.dirname(os.path.abspath(configs.__file__))


def resolve_config(value: str) -> str:
    """A `--config` value: a file as it is; otherwise a bundled config by name (`clue/tnews`, `clue/tnews.py`, or a
    file name found once among the bundled configs, e.g. `peoples_daily_ner`). A `:argument` suffix is kept."""
    path, colon, argument = value.partition(":")
    if os.path.exists(path) or not path:
        return value
    root = bundled_configs()
    name = path if path.endswith(".py") else path + ".py"
    candidates = [os.path.join(root, name)] if os.path.exists(os.path.join(root, name)) else sorted(
        os.path.join(folder, name) for folder, _, files in os.walk(root) if name in files)
    if len(candidates) != 1:
        what = "names several" if candidates else "is neither a file nor a bundled config"
        print(f"error: --config {value} {what}; bundled configs: {', '.join(bundled_config_names())}",
              file=sys.stderr)
        sys.exit(2)
    return candidates[0] + colon + argument


def bundled_config_names() -> list[str]:
    root, names = bundled_configs(), []
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if name.endswith(".py") and "def get_config(" in open(path, encoding="utf-8").read():
                names.append(os.path.relpath(path, root)[:-3])
    return sorted(names)


def describe_program(usage: str, flag_names, *, configs=lambda name: True) -> None:
    """What `--help` prints for the running program: `usage`, where the bundled configs are and the names of those
    it runs (`configs(name)`), and the flags of `flag_names` (absl lists only the main module's own flags; these
    live in shared modules)."""
    from absl import flags

    main = sys.modules["__main__"]
    names = [name for name in bundled_config_names() if configs(name)]
    main.__doc__ = (f"{usage}\n\n--config takes a config file, or a bundled config by name (in {bundled_configs()}):"
                    f"\n  {', '.join(names)}\nOverride any key with --config.<section>.<key>=value.")
    for name in flag_names:
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])


def _resolve_config_flags(argv):
    out, index = [], 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--config" and index + 1 < len(argv):
            out += [arg, resolve_config(argv[index + 1])]
            index += 2
            continue
        if arg.startswith("--config="):
            arg = "--config=" + resolve_config(arg.split("=", 1)[1])
        out.append(arg)
        index += 1
    return out


def parse_flags(argv):
    """absl's flag parsing, with `--config` also taking a bundled config's name, and a misspelt or ill-typed
    `--config.*` override reported in one line."""
    if any(arg in ("--help", "-h", "-?", "--helpshort") for arg in argv[1:]):
        app.usage(shorthelp=True, writeto_stdout=True)       # absl would exit 1 after it; asking is not an error
        sys.exit(0)
    from absl import flags

    argv = _resolve_config_flags(argv)
    config_file = _config_file(argv)
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        # absl's own flag errors (a missing --workdir, an ill-typed value); ml_collections reports an error inside
        # a config file this way too, its traceback folded into the message.
        cause = _innermost(error)
        if config_file and "whilst parsing config file" in str(error):
            failure = _config_file_failure(cause, config_file) or \
                f"{config_file}: {type(cause).__name__}: {' '.join(str(cause).split())}"
            print(f"error: --config {failure}", file=sys.stderr)
        else:
            print(f"error: {' '.join(str(error).split())}\nPass --helpshort to see the flags.", file=sys.stderr)
        sys.exit(2)
    except Exception as error:
        if config_file and (failure := _config_file_failure(error, config_file)):
            print(f"error: --config {failure}", file=sys.stderr)
            sys.exit(2)
        if not isinstance(error, (AttributeError, KeyError, TypeError, ValueError)):
            raise
        # ml_collections' message for an unknown key arrives quoted, with escaped quotes and newlines.
        message = str(error.args[0] if error.args else error).replace("\\'", "").strip("'")
        key, _, hint = message.replace("\\n", "\n").partition("\n")
        if hint.startswith("Did you mean"):
            key = key.strip(chr(39))
            given = [arg[2:].partition("=")[0][len("config."):] for arg in argv
                     if arg.startswith("--config.") and arg.partition("=")[0].endswith("." + key)]
            config = _load_config(argv) if len(given) > 1 else None
            unknown = [path for path in given if config is None or not _config_has(config, path)]
            message = f"no key {unknown[0] if len(unknown) == 1 else key}. {hint.strip()}"
        else:
            message = " ".join(message.replace("\\n", " ").split())
        print(f"error: bad --config override: {message}", file=sys.stderr)
        sys.exit(2)


def _innermost(error: BaseException) -> BaseException:
    while (inner := error.__cause__ or error.__context__) is not None and inner is not error:
        error = inner
    return error


def _load_config(argv):
    """The config `--config` names, loaded again (the parse that failed holds none); None if that fails too."""
    import runpy

    value = _config_value(argv)
    if value is None:
        return None
    path, colon, argument = value.partition(":")
    try:
        get_config = runpy.run_path(path)["get_config"]
        return get_config(argument) if colon else get_config()
    except Exception:
        return None


def _config_has(config, path: str) -> bool:
    node = config
    for part in path.split("."):
        try:
            node = node[part]
        except (KeyError, TypeError, AttributeError):
            return False
    return True


def _config_value(argv) -> str | None:
    """`--config`'s value as given: FILE or FILE:ARGUMENT."""
    for index, arg in enumerate(argv):
        if arg == "--config" and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def _config_file(argv) -> str | None:
    value = _config_value(argv)
    return value.partition(":")[0] if value is not None else None


def _config_file_failure(error: BaseException, config_file: str) -> str | None:
    """What went wrong inside the config file itself, as `FILE, line N: ...` (None: the error is not the file's)."""
    path = os.path.abspath(config_file)
    if isinstance(error, SyntaxError) and error.filename and os.path.abspath(error.filename) == path:
        return f"{config_file}, line {error.lineno}: {type(error).__name__}: {error.msg}"
    if isinstance(error, AttributeError) and "get_config" in str(error) \
            and not any(os.path.abspath(frame.f_code.co_filename) == path for frame, _ in _frames(error)):
        return f"{config_file} has no get_config() function (a config file defines one that returns the config)."
    lines = [line for frame, line in _frames(error) if os.path.abspath(frame.f_code.co_filename) == path]
    if lines:
        return f"{config_file}, line {lines[-1]}: {type(error).__name__}: {error}"
    return None


def _frames(error: BaseException):
    import traceback

    return list(traceback.walk_tb(error.__traceback__))
