"""Validation: the Great Expectations suite a family builds, a table's checks against its contract, and the validation record."""
