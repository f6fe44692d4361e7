"""Front doors: each translates its dialect's wire shape to core calls and back, nothing more."""
