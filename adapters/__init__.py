"""Platform edges: turn platform events into ChatRequests and Decisions into posts."""
