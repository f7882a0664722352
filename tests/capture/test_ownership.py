"""Who owns which symbol (pure rules, fed members and leases): no database, milliseconds."""

from __future__ import annotations

from cryptolab.capture.ownership import Lease, Member, plan_ownership, preferred
from cryptolab.capture.workers import shard

SYMS = frozenset({"AAA", "BBB", "CCC", "DDD", "EEE", "FFF"})


def m(
    mid: str, standby: bool = False, up_for: float = 60.0, age: float = 0.2, syms: frozenset[str] = SYMS
) -> Member:
    return Member(mid, syms, standby, up_for, age)


def test_three_members_split_six_symbols_each_exactly_once() -> None:
    members = [m("a"), m("b"), m("c")]
    owners = {}
    for me in ("a", "b", "c"):
        plan = plan_ownership(me, SYMS, members, [], {}, 0.0)
        for s in plan.claim:
            assert s not in owners, f"{s} claimed twice"
            owners[s] = me
    assert set(owners) == SYMS
    assert all(owners[s] == preferred(s, members, 5.0) for s in SYMS)


def test_a_free_symbol_whose_preferred_member_is_dead_is_taken_after_the_grace() -> None:
    members = [m("a"), m("b", age=30.0)]  # b stopped heartbeating: not live
    sym = next(s for s in sorted(SYMS) if preferred(s, [m("a"), m("b")], 5.0) == "b")
    assert preferred(sym, members, 5.0) == "a"  # a dead member is never preferred
    live_pref_b = [m("a"), m("b", age=1.0)]  # b alive but its lease ran out (cut off): a waits for the grace
    assert sym not in plan_ownership("a", SYMS, live_pref_b, [], {sym: 10.0}, 11.0, grace=2.0).claim
    assert sym in plan_ownership("a", SYMS, live_pref_b, [], {sym: 10.0}, 12.5, grace=2.0).claim


def test_a_held_lease_is_never_claimed() -> None:
    leases = [Lease(s, "b", 3.0) for s in SYMS]
    plan = plan_ownership("a", SYMS, [m("a"), m("b")], leases, {s: 0.0 for s in SYMS}, 100.0)
    assert plan.claim == () and plan.free == frozenset()


def test_an_expired_lease_is_free() -> None:
    leases = [Lease("AAA", "b", -0.1)]
    plan = plan_ownership("a", {"AAA"}, [m("a", syms=frozenset({"AAA"}))], leases, {}, 0.0)
    assert plan.claim == ("AAA",)


def test_a_standby_owns_nothing_while_owners_live_and_takes_orphans() -> None:
    members = [m("owner"), m("standby", standby=True)]
    leases = [Lease(s, "owner", 4.0) for s in SYMS]
    assert plan_ownership("standby", SYMS, members, leases, {}, 0.0).claim == ()
    # the owner stopped: its leases are gone and it no longer heartbeats
    members = [m("owner", age=60.0), m("standby", standby=True)]
    assert set(plan_ownership("standby", SYMS, members, [], {}, 0.0).claim) == SYMS
    assert all(preferred(s, [m("standby", standby=True)], 5.0) is None for s in SYMS)


def test_a_symbol_is_handed_back_to_its_preferred_member_once_it_has_settled() -> None:
    sym = next(s for s in sorted(SYMS) if preferred(s, [m("a"), m("b")], 5.0) == "b")
    leases = [Lease(sym, "a", 4.0)]
    young = plan_ownership("a", SYMS, [m("a"), m("b", up_for=1.0)], leases, {}, 0.0, settle=5.0)
    assert sym not in young.release
    settled = plan_ownership("a", SYMS, [m("a"), m("b", up_for=6.0)], leases, {}, 0.0, settle=5.0)
    assert sym in settled.release
    assert settled.hand_to[sym] == "b"  # handed straight to b (make-before-break), not dropped


def test_shards_are_round_robin_and_never_empty() -> None:
    assert shard(["A", "B", "C", "D", "E"], 2) == [["A", "C", "E"], ["B", "D"]]
    assert shard(["A"], 4) == [["A"]]
