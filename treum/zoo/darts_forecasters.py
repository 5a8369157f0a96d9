"""darts forecasters (being written; registers nothing yet)."""
