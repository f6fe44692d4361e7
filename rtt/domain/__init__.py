"""Pure models and rules: no I/O, so they are shared by every front door and unit-testable."""
