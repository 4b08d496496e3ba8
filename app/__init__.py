"""rnnserve HTTP service."""
