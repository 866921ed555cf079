"""Public data sets the service ships: the demo tenant loads them, the offline eval
(`evals/`) scores models on them. Both read them through this package, so the service
never imports the eval harness."""
