"""Training: fitting on one process or several, where it runs, checkpoints, and scoring the challenger and the champion on the holdout."""
