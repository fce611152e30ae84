"""Lightning callbacks of this project, selected with ``+callbacks=<name>`` (conf/callbacks/)."""

from bench.callbacks.epoch_log import EpochLog, progress_bar_enabled
from bench.callbacks.mc_dropout import MCDropoutCallback

__all__ = ["EpochLog", "MCDropoutCallback", "progress_bar_enabled"]
