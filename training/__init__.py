"""Offline training, evaluation and export CLIs for rnnserve models."""
