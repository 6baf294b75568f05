"""Glue to upstream slime: the only package that imports slime, and only lazily."""
