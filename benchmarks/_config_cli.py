"""`--config FILE [--config.key=value ...]` for benchmark scripts that parse their own flags with argparse."""

import os
import sys


def define_config(parser, config: str, overrides: list[str], root: str, help_text: str) -> str:
    """Define absl's `--config` flag from `config` (relative to `root`) with `overrides` applied, refusing a missing
    file or an argument that is not a config override through `parser`; returns the config file's path. The config
    is then `absl.flags.FLAGS.config`."""
    from absl import flags
    from ml_collections import config_flags

    path = config if os.path.isabs(config) else os.path.join(root, config)
    if not os.path.isfile(path):
        parser.error(f"--config {path} is not a file")
    unknown = [arg for arg in overrides if not arg.startswith("--config.")]
    if unknown:
        parser.error(f"unrecognised arguments: {' '.join(unknown)} (config overrides are --config.key=value)")
    sys.argv = [sys.argv[0], *overrides]        # config_flags reads sys.argv too: leave it only the overrides
    config_flags.DEFINE_config_file("config", path, help_text, lock_config=True)
    flags.FLAGS(sys.argv)
    return path
