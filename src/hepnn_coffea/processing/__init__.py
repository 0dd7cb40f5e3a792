"""processing stage."""
