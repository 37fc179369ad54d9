"""The `tail` input: discovery, file identity, reading, offsets. Knows nothing of outputs."""
