"""Running models: the backend-neutral Engine and one small module per backend."""
