"""Scoring a model on the holdout: metrics, statistics, plots and the gate's rule, a pure function of scores and settings."""
