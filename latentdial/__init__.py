"""latentdial."""
