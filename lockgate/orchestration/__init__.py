"""Running the pipeline: the workspace's Prefect server, the retry policy of every step, and the reports people read."""
