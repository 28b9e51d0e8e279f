"""Rooms beyond the mesh: the broker drives Janus's VideoRoom (an SFU) for room media.

Layered bottom-up:

- :mod:`.placement` (pure): which instance a room lives on, its room number,
  secret, PIN and member tokens;
- :mod:`.janus`: the broker's session on one Janus (create/destroy rooms,
  allow tokens, kick, keepalives), on :mod:`peerpy_protocol.janus`;
- :mod:`.bridge`: :class:`Sfu`, what the rooms front calls when a member is
  admitted or leaves, and what moves rooms when an instance dies or returns.
"""

from .bridge import Sfu
from .placement import Instance, parse_instance

__all__ = ["Instance", "Sfu", "parse_instance"]
