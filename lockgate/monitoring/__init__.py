"""Watching served models: drift tests, and checks of served traffic against held-out rows."""
