"""sktime forecasters (being written; registers nothing yet)."""
