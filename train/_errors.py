"""How the programs end on an error a user can fix: one line naming what is wrong, exit code 2, no traceback."""

import sys

from absl import app

USER_ERRORS = (ValueError, KeyError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError)


def report_user_errors(fn):
    """Run `fn()`; an error a user can fix ends the program with one `error:` line and exit code 2."""
    from rofjax.checkpoint.run import RunLockedError

    try:
        return fn()
    except (*USER_ERRORS, RunLockedError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def parse_flags(argv):
    """absl's flag parsing, with a misspelt or ill-typed `--config.*` override reported in one line."""
    try:
        return app.parse_flags_with_usage(argv)
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        # ml_collections' message for an unknown key arrives quoted, with escaped quotes and newlines.
        message = str(error.args[0] if error.args else error).replace("\\n", " ").replace("\\'", "").strip("'")
        print(f"error: bad --config override: {message}", file=sys.stderr)
        sys.exit(2)
