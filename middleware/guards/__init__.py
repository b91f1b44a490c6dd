"""Guards: the protocol, the policy runner, the configured kinds and their registry."""
