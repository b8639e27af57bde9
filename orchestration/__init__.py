"""Dagster code location: dbt models and journey activations as assets, run by urgency tier."""
