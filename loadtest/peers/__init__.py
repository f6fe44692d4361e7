"""Other servers the fan-out benchmark runs against rtt in the same run, with the same load."""
