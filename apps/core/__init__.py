"""Neutral building blocks shared by the interfaces, the domain and the workers (a plain package, not a Django app)."""
