"""types layer."""
