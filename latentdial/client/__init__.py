"""latentdial/client."""
