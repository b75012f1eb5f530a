"""Training application: PPO (stable-baselines3), its policy, imitation warm-up, checkpoints, run folders, export of routers."""
