"""regime classifier (being written; registers nothing yet)."""
