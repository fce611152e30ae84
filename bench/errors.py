"""Errors a user can fix: printed as one line, never as a traceback."""


class ConfigError(ValueError):
    """A config value is invalid or two choices do not compose.

    The message names the offending key (e.g. ``dataset.train_size``) and what is allowed;
    ``bench.train`` prints it as a single line and exits with status 2.
    """


class DatasetNotFoundError(ConfigError):
    """The files of a dataset are not where ``dataset.data_dir`` points."""
