"""Filters: record transformations applied per chunk before routing (Fluent Bit names)."""
