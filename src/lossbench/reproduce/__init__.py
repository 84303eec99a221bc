"""Reproductions of published claims (the EXACT paper's toy example, its tables, ...)."""
