"""Syncs: a dbt model's rows kept in step with an engagement platform (reverse ETL), changed rows
only, every row's outcome landed. Declared in the dbt project (`meta.syncs`, declaration.py)."""

from activations.syncs.declaration import Sync, SyncDefinitionError, load_syncs, sync_destinations
from activations.syncs.run import MassRemovalError, SyncLockedError, SyncSummary, run_sync

__all__ = [
    "MassRemovalError",
    "Sync",
    "SyncDefinitionError",
    "SyncLockedError",
    "SyncSummary",
    "load_syncs",
    "sync_destinations",
    "run_sync",
]
