"""Models with deliberate weight initialisation."""

from trainwell.models.init import init_weights
from trainwell.models.mlp import MLP

__all__ = ["MLP", "init_weights"]
