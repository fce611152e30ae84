"""Lightning callbacks of this project, selected with ``+callbacks=<name>`` (conf/callbacks/)."""

from bench.callbacks.mc_dropout import MCDropoutCallback

__all__ = ["MCDropoutCallback"]
