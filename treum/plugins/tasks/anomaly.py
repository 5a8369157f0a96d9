"""anomaly task (being written; registers nothing yet)."""
