"""Load and latency tools for rtt; bounded in count and time, loopback only."""
