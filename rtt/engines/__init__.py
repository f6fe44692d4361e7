"""Pluggable engines: where messages are kept and how nodes hear about them."""
