"""serving/runtimes."""
