"""peerpy.relayhold: when relayed candidate pairs may be checked (pure, a moved clock)."""

from __future__ import annotations

import pytest

from peerpy.exceptions import InvalidAddressError, UsageError
from peerpy.network import NetworkPolicy, check_relay_hold
from peerpy.relayhold import (
    DEFAULT_RELAY_HOLD,
    PairView,
    RelayHold,
    direct_may_succeed,
    relayed,
)

RELAY = PairView(relayed=True, failed=False)
DIRECT = PairView(relayed=False, failed=False)
DIRECT_FAILED = PairView(relayed=False, failed=True)
HOLD = RelayHold(started=100.0, hold=1.0)


def allows(
    pair: PairView = RELAY,
    pairs: tuple[PairView, ...] = (DIRECT, RELAY),
    *,
    now: float = 100.0,
    controlling: bool = True,
    nominated_by_remote: bool = False,
    more_candidates: bool = False,
) -> bool:
    return HOLD.allows(
        pair,
        pairs,
        now=now,
        controlling=controlling,
        nominated_by_remote=nominated_by_remote,
        more_candidates=more_candidates,
    )


def test_a_pair_is_relayed_when_either_candidate_is() -> None:
    """A TURN candidate on our side or theirs makes the pair relayed."""
    assert relayed("relay", "srflx")
    assert relayed("host", "relay")
    assert not relayed("host", "srflx")
    assert not relayed("host", "prflx")


def test_relayed_pairs_wait_until_the_hold_ends() -> None:
    """While a direct pair may still succeed, a relayed pair waits out the hold."""
    assert not allows(now=100.0)
    assert not allows(now=100.999)
    assert HOLD.release_at == 101.0
    assert allows(now=101.0)
    assert allows(now=250.0)


def test_direct_pairs_are_never_held() -> None:
    """Direct pairs go at once, whatever the clock."""
    assert allows(DIRECT, now=100.0)
    assert allows(DIRECT_FAILED, now=100.0)


def test_the_controlled_side_does_not_hold() -> None:
    """Only the controlling side nominates: the controlled side checks relays at once."""
    assert allows(now=100.0, controlling=False)


def test_a_pair_the_remote_nominated_is_not_held() -> None:
    """A controlling peer that is not peerpy chose it: holding it only delays the connection."""
    assert allows(now=100.0, nominated_by_remote=True)


def test_relays_go_once_no_direct_pair_can_succeed() -> None:
    """Every direct pair failed and no candidate is coming: no reason to wait."""
    assert allows(pairs=(DIRECT_FAILED, RELAY), now=100.1)
    assert allows(pairs=(RELAY,), now=100.1)  # a relay-only remote
    # A candidate may still come, and with it a direct pair.
    assert not allows(pairs=(DIRECT_FAILED, RELAY), now=100.1, more_candidates=True)
    assert not allows(pairs=(DIRECT_FAILED, DIRECT, RELAY), now=100.1)


def test_direct_may_succeed() -> None:
    """A direct pair not failed, or candidates still expected."""
    assert direct_may_succeed([DIRECT], more_candidates=False)
    assert direct_may_succeed([], more_candidates=True)
    assert not direct_may_succeed([DIRECT_FAILED, RELAY], more_candidates=False)


def test_relay_hold_is_validated() -> None:
    """A number of seconds >= 0 or None; NetworkPolicy raises its own error type."""
    for good in (None, 0, 0.5, 2):
        check_relay_hold(good)
    for bad in (-1, float("nan"), float("inf"), True, "1"):
        with pytest.raises(UsageError, match="relay_hold"):
            check_relay_hold(bad)
        with pytest.raises(InvalidAddressError, match="relay_hold"):
            NetworkPolicy(relay_hold=bad)  # type: ignore[arg-type]


def test_network_policy_holds_relays_by_default() -> None:
    """The default policy holds relays DEFAULT_RELAY_HOLD s; that alone needs the hooks."""
    assert NetworkPolicy().relay_hold == DEFAULT_RELAY_HOLD
    bare = NetworkPolicy(udp_buffer_bytes=None, relay_hold=None)
    assert not bare.needs_hooks
    assert NetworkPolicy(udp_buffer_bytes=None).needs_hooks
    assert not NetworkPolicy(udp_buffer_bytes=None, relay_hold=0).needs_hooks
