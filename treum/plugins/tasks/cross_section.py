"""cross_section task (being written; registers nothing yet)."""
