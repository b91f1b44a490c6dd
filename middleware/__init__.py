"""guardbot's middleware: LLM clients, guards, the parallel pipeline and the decision log.

Nothing here knows about Slack or Discord; adapters translate to and from the
types in :mod:`middleware.types`.
"""
