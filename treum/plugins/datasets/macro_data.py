"""macro data set (being written; registers nothing yet)."""
