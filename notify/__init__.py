"""Notification routing: which channels hear of an alert, grouped how, and when not (pure, no IO).

`notify.routing` holds the policy tree (Alertmanager-like) and its mute timings. The adapters that send
(`store.senders`) and the notifier that plans and records deliveries (`actors.notifier`) call it.
"""

from notify.routing import AlertFacts, Match, MuteTiming, PolicyError, PolicyTree, Route

__all__ = ["AlertFacts", "Match", "MuteTiming", "PolicyError", "PolicyTree", "Route"]
