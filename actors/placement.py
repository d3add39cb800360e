"""Which EquipmentActor hosts which equipment entity.

Rendezvous (highest-random-weight) hashing: every equipment picks the slot with the
highest hash of (slot, equipment). Changing the number of slots moves only the entities
whose winning slot changed, about 1/n of them, so a budget change keeps most models warm.

>>> place(["PJ-1", "PJ-2", "CMP-1"], budget=2)
{'PJ-1': 'slot-1', 'PJ-2': 'slot-1', 'CMP-1': 'slot-0'}
>>> place(["PJ-1", "PJ-2"], budget=8)  # budget at least the count: one actor each
{'PJ-1': 'own-PJ-1', 'PJ-2': 'own-PJ-2'}
>>> place(["PJ-1", "BIG"], budget=1, dedicated={"BIG"})
{'PJ-1': 'own-PJ-1', 'BIG': 'dedicated-BIG'}
"""

import hashlib
from collections.abc import Collection, Iterable


def _weight(slot: str, equipment_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{slot}\x00{equipment_id}".encode(), digest_size=8).digest(), "big")


def place(
    equipment_ids: Iterable[str], *, budget: int, dedicated: Collection[str] = ()
) -> dict[str, str]:
    """Map each equipment id to the name of the actor slot that hosts it.

    The tenant gets ``min(#shared equipment, budget)`` shared slots; equipment marked
    dedicated always gets a slot of its own.
    """
    ids = list(equipment_ids)
    shared = [e for e in ids if e not in dedicated]
    slots = [f"slot-{i}" for i in range(max(1, budget))]
    placement: dict[str, str] = {}
    for equipment_id in ids:
        if equipment_id in dedicated:
            placement[equipment_id] = f"dedicated-{equipment_id}"
        elif len(shared) <= budget:
            placement[equipment_id] = f"own-{equipment_id}"
        else:
            placement[equipment_id] = max(slots, key=lambda s: _weight(s, equipment_id))
    return placement
