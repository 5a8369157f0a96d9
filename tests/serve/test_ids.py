"""The serving hot path's ids: random version-4 UUIDs that a ``random.seed()`` elsewhere cannot repeat."""

from __future__ import annotations

import os
import random
import uuid

from treum.serve.ids import new_hex, new_uuid


def test_ids_are_version_4_and_unique_even_after_random_seed():
    random.seed(7)
    first = [new_hex() for _ in range(300)]  # more than one 4 KiB buffer
    random.seed(7)  # a model's training seeding the process: must not make the ids repeat
    second = [new_hex() for _ in range(300)]
    assert len(set(first + second)) == 600
    assert all(uuid.UUID(h).version == 4 for h in first) and new_uuid().version == 4


def test_a_forked_child_does_not_repeat_its_parents_ids():
    new_hex()  # the parent has a buffer with bytes left
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        os.write(write, new_hex().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    assert child != new_hex()
