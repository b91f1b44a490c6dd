"""Configuration: config.toml -> Config, runtime settings and their keys, policy building."""
