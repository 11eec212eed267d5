"""The final states of the newest MTs, for query_sm: one byte per message number in a ring.

A carrier numbers its MTs one after the other, so the newest ``capacity`` numbers index a fixed
buffer: tracking an MT allocates nothing and the memory is the same after a million MTs as after
the first. (A dict of message ids with the oldest evicted churns a table of several MiB, which
glibc's heap did not give back: the simulator grew by 7 MiB in steps during an hour's soak.)
"""

from __future__ import annotations


def format_message_id(number: int, hex_ids: bool) -> str:
    """The id a carrier gives its MT number ``number``: decimal, or hexadecimal (the profile's
    ``message_id_format``)."""
    return f"{number:x}" if hex_ids else str(number)


def message_number(message_id: str, hex_ids: bool) -> int | None:
    """The number ``message_id`` names, or None: only the very id the carrier gave names it (no sign,
    space, underscore, capital or leading zero)."""
    if not (message_id.isascii() and message_id.isalnum()):
        return None
    try:
        number = int(message_id, 16 if hex_ids else 10)
    except ValueError:
        return None
    return number if format_message_id(number, hex_ids) == message_id else None


class MessageStates:
    """``state`` (an SMPP message_state) per message number, for the newest ``capacity`` numbers set."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        # state + 1 per slot; 0: no state (never set, or the slot's number was passed over)
        self._slots = bytearray(capacity)
        self._newest = -1

    def set(self, number: int, state: int) -> None:
        """Records ``state`` for ``number``; a number older than the newest ``capacity`` is not kept."""
        capacity = self._capacity
        newest = self._newest
        if number > newest:
            if number - newest > capacity:
                self._slots = bytearray(capacity)
            else:  # the numbers passed over forget what their slots held
                for passed in range(newest + 1, number):
                    self._slots[passed % capacity] = 0
            self._newest = number
        elif number <= newest - capacity or number < 0:
            return
        self._slots[number % capacity] = state + 1

    def get(self, number: int) -> int | None:
        if number > self._newest or number <= self._newest - self._capacity or number < 0:
            return None
        stored = self._slots[number % self._capacity]
        return stored - 1 if stored else None

    def __len__(self) -> int:
        """How many numbers have a state."""
        return sum(1 for slot in self._slots if slot)

    def clear(self) -> None:
        self._slots = bytearray(self._capacity)
        self._newest = -1
