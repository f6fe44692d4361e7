"""The rules and the one delivery pipeline, shared by every front door."""
