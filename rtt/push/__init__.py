"""Push providers: outbound adapters the dispatcher (rtt/core/push_dispatch.py) calls through
its one `Provider` Protocol. Each module speaks one service's documented wire format and maps
its answers to a `Delivery`; none knows about the outbox, leases or retries."""
