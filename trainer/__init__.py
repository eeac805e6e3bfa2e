"""Model selection, training, and publishing versions (offline and online)."""
