"""Lets `python -m rtt` behave exactly like the `rtt` console script."""

from rtt.cli import main

main()
