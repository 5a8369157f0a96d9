"""The built-in tasks, one plugin module each: the task, its labels, metrics and baselines."""
