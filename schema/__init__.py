"""Contracts: identifiers, NATS subjects, message and API models, SQL migrations.

Nothing in here imports anything else of ours.
"""
