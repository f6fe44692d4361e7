"""Live sockets of this node: the hub that routes fan-outs, and one bounded session per socket."""
