"""training/objectives."""
