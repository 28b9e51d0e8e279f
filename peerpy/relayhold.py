"""Direct before relayed: the rule that holds TURN candidate pairs back for a while (pure).

ICE checks candidate pairs and, on the controlling side, aioice nominates the
first pair whose check succeeds (aggressive nomination). Between two cone NATs
with STUN and TURN configured, the direct pair's first check is usually
dropped by the other NAT (it has not sent anything our way yet) and succeeds on
its retransmission 0.5 s later; a relayed pair can succeed first, and the
connection then goes through the TURN server for its whole life. Measured in
the NAT lab: relayed in 2 of 6 runs, more often while the machine was busy.

:class:`RelayHold` decides when a relayed pair (a pair with a ``relay``
candidate on either side) may be checked: not before ``hold`` seconds after
checking started, unless

- this side is not controlling (the controlled side nominates nothing, and its
  early relayed checks open the TURN permissions and NAT bindings that make the
  controlling side's later relayed check succeed at once),
- the other side nominated that pair (a controlling peer that is not peerpy,
  such as a browser, chose it: holding it back would only delay the
  connection), or
- no direct pair can succeed any more: every one failed and no more remote
  candidates are expected (or there never was one, as with a relay-only peer).

Direct pairs are never held. When only a relay works (a symmetric NAT on either
side), the connection opens about ``hold`` seconds after checking started, plus
one round trip through the relay. The rule is pure (the clock is passed in);
:mod:`peerpy.backends._aioice` applies it to aioice's checks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import attrs

__all__ = [
    "DEFAULT_RELAY_HOLD",
    "PairView",
    "RelayHold",
    "direct_may_succeed",
    "relayed",
]

#: Seconds relayed pairs wait for a direct one, by default: longer than the
#: first retransmission of a check (0.5 s) plus a loaded machine's delays.
DEFAULT_RELAY_HOLD: Final = 1.0


def relayed(local_type: str, remote_type: str) -> bool:
    """Whether a pair with these candidate types goes through a TURN server."""
    return local_type == "relay" or remote_type == "relay"


@attrs.frozen
class PairView:
    """What the rule needs to know of one candidate pair."""

    #: A ``relay`` candidate on either side (see :func:`relayed`).
    relayed: bool
    #: Its check failed (it will not succeed any more).
    failed: bool


def direct_may_succeed(pairs: Iterable[PairView], *, more_candidates: bool) -> bool:
    """Whether a direct pair succeeded, may still succeed, or may still be formed."""
    return more_candidates or any(not p.relayed and not p.failed for p in pairs)


@attrs.frozen
class RelayHold:
    """The hold of one ICE connection, from ``started`` (its clock) for ``hold`` seconds."""

    started: float
    hold: float

    @property
    def release_at(self) -> float:
        """When relayed pairs may be checked at the latest."""
        return self.started + self.hold

    def allows(
        self,
        pair: PairView,
        pairs: Iterable[PairView],
        *,
        now: float,
        controlling: bool,
        nominated_by_remote: bool,
        more_candidates: bool,
    ) -> bool:
        """Whether ``pair`` may be checked now (``pairs``: all the connection's pairs)."""
        if not pair.relayed or not controlling or nominated_by_remote:
            return True
        if now >= self.release_at:
            return True
        return not direct_may_succeed(pairs, more_candidates=more_candidates)
