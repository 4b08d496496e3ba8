"""The engine: everything between an HTTP handler and model math (DESIGN.md §5)."""
