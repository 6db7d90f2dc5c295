"""Turning rows into vectors and vectors into the store: the pipeline, its claims, the rebuild."""
