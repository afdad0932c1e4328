"""Admission control: a bounded number of requests in the server, the rest refused at once.

Refusing early (503 with ``Retry-After``) keeps latency bounded for the requests that
are admitted, and tells a router or client to go elsewhere, instead of letting a queue
grow until every request times out.

>>> gate = Admission(max_in_flight=1, max_queue=1)
>>> gate.try_acquire(), gate.try_acquire(), gate.try_acquire()
(True, True, False)
>>> gate.release(); gate.try_acquire()
True
"""

from __future__ import annotations


class Admission:
    """Counts admitted requests; at most ``max_in_flight + max_queue`` at a time.

    Used from the event loop only, so plain integers need no lock.
    """

    def __init__(self, max_in_flight: int, max_queue: int):
        self.capacity = max_in_flight + max_queue
        self.admitted = 0
        self.refused = 0

    def resize(self, max_in_flight: int, max_queue: int) -> None:
        """Change the limits (a router's follow its replica count); admitted requests stay.

        >>> gate = Admission(1, 0); gate.try_acquire(); gate.resize(2, 0); gate.try_acquire()
        True
        True
        """
        self.capacity = max_in_flight + max_queue

    def try_acquire(self) -> bool:
        """Admit one request if there is room; ``False`` means answer 503 now."""
        if self.admitted >= self.capacity:
            self.refused += 1
            return False
        self.admitted += 1
        return True

    def release(self) -> None:
        """The request is answered (or timed out): free its slot."""
        self.admitted = max(0, self.admitted - 1)

    def __repr__(self) -> str:
        return f"Admission({self.admitted}/{self.capacity} admitted, {self.refused} refused)"
