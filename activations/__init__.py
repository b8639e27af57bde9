"""Activations: from entry audiences to messages, with every decision written to the ledger.

journeys  what a journey declares (read from the dbt manifest, where the audience model keeps it)
engine    which step is due for whom now, and which are decided already (the ledger diff)
guards    consent, reachability, exits and the global frequency cap, checked at send time
render    message content from templates with declared fallbacks
channels  one sending core (rate limit, retry, ledger before and after) and a module per provider
run       ties them together for one journey run
"""
