"""Dagster code location: dbt models and journey activations as assets, scheduled by urgency tier."""
