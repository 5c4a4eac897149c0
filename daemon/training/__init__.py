"""Corpus building and training of the conv1d speaker embedder."""
