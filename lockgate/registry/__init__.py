"""The registry's side: MLflow tracking and the one helper steps log through, the champion alias, the Bento build and its served check."""
