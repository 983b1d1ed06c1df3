"""Lorong's shared vocabulary: domain types, metric table, schema names, errors and settings (no I/O)."""
