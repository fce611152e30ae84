"""Lightning's tqdm bar, redrawn a few times a second at most instead of after every batch.

Every redraw reads the bar's metrics back from the device (``.item()``: a host–device
synchronisation) and writes to the terminal; at thousands of small steps a second that costs
more than the steps. Lightning's ``refresh_rate`` counts batches, which is right for neither a
tiny nor a huge model; this bar counts time.
"""

from __future__ import annotations

import time

from lightning.pytorch.callbacks import TQDMProgressBar


class ThrottledProgressBar(TQDMProgressBar):
    """Redraw at most every ``interval`` seconds, and always at the end of an epoch."""

    def __init__(self, interval: float = 0.25) -> None:
        super().__init__(refresh_rate=1)
        self.interval = interval
        self._last = float("-inf")  # the first batch draws

    def _should_update(self, current: int, total: int) -> bool:
        if not self.is_enabled:
            return False
        now = time.monotonic()
        if current == total or now - self._last >= self.interval:
            self._last = now
            return True
        return False
