"""Post-training prediction methods behind one contract (``base.Predictor``).

Each method turns trained networks and input batches into a predictive distribution plus
per-sample uncertainty scores; ``bench.evaluate`` scores every method with the same metric code
and never branches on method types.
"""

from bench.uncertainty.base import OutputHead, Prediction, Predictor

__all__ = ["OutputHead", "Prediction", "Predictor"]
