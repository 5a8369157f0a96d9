"""forecast task (being written; registers nothing yet)."""
