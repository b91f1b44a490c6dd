"""The guardbot command line: one module per command group."""
