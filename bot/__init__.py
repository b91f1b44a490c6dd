"""guardbot, the application: configuration, wiring, admin commands, replay and the CLI."""
