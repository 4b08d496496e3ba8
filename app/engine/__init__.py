"""The engine: everything between an HTTP handler and model math (batching, workers, devices)."""
