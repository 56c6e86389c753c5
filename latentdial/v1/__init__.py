"""latentdial/v1."""
