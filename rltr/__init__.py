"""rltr: RL-guided token reduction for frozen transformers."""

__version__ = "0.1.0"
