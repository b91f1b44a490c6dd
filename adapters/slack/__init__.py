"""Slack: slack-bolt app (Events API and Socket Mode), events in, posts out."""
