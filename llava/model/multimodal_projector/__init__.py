"""Projectors mapping vision features into the language model's embedding space."""
