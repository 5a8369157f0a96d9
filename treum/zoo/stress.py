"""stress detectors (being written; registers nothing yet)."""
