"""rltr: RL-guided token reduction for frozen transformers.

Importing rltr registers the Gymnasium env ``rltr/TokenReduction-v0`` (a string entry point: nothing
heavy is imported until the env is made).
"""

import gymnasium as _gym

__version__ = "0.1.0"

ENV_ID = "rltr/TokenReduction-v0"
if ENV_ID not in _gym.registry:
    _gym.register(id=ENV_ID, entry_point="rltr.envs:make_env")
