"""Audit views: how decisions, stats and exports are shown to people."""
