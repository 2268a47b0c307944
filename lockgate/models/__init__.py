"""Keras architectures: every family's input end, and boosted trees rewritten as one Keras layer."""
