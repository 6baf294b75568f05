"""Next-state signals: judges (evaluative), hint extractors (directive), the teacher query. Never on the serving path."""
