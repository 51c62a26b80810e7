"""SimpleAssignor rules (semantics doc, section 2.6)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from aioshare.broker.assignor import assign


def partitions_of(result: dict[str, dict[str, frozenset[int]]], member: str) -> set[tuple[str, int]]:
    return {(topic, p) for topic, parts in result[member].items() for p in parts}


def holders(result: dict[str, dict[str, frozenset[int]]]) -> Counter[tuple[str, int]]:
    return Counter(tp for member in result for tp in partitions_of(result, member))


class TestHomogeneous:
    def test_fewer_members_than_partitions_spreads_each_partition_once(self) -> None:
        result = assign({"a": ["t"], "b": ["t"]}, {"t": 5})
        assert holders(result) == Counter({("t", p): 1 for p in range(5)})
        assert sorted(len(partitions_of(result, m)) for m in result) == [2, 3]

    def test_more_members_than_partitions_shares_every_partition(self) -> None:
        result = assign({"a": ["t"], "b": ["t"], "c": ["t"]}, {"t": 1})
        assert all(result[m] == {"t": frozenset({0})} for m in "abc")

    def test_four_members_two_partitions_gives_each_partition_two_members(self) -> None:
        result = assign({m: ["t"] for m in "abcd"}, {"t": 2})
        assert holders(result) == Counter({("t", 0): 2, ("t", 1): 2})
        assert all(len(partitions_of(result, m)) == 1 for m in "abcd")

    def test_balance_is_across_all_subscribed_topics(self) -> None:
        result = assign({"a": ["x", "y"], "b": ["x", "y"]}, {"x": 1, "y": 1})
        assert sorted(len(partitions_of(result, m)) for m in result) == [1, 1]

    def test_missing_topics_are_not_assigned(self) -> None:
        result = assign({"a": ["t", "ghost"]}, {"t": 2})
        assert result == {"a": {"t": frozenset({0, 1})}}

    def test_previous_assignment_is_kept_when_still_balanced(self) -> None:
        previous = {"a": {"t": [0, 3]}, "b": {"t": [1, 2]}}
        result = assign({"a": ["t"], "b": ["t"]}, {"t": 4}, previous)
        assert result == {"a": {"t": frozenset({0, 3})}, "b": {"t": frozenset({1, 2})}}

    def test_a_new_member_takes_partitions_from_the_overfilled_ones_only(self) -> None:
        previous = {"a": {"t": [0, 1, 2]}, "b": {"t": [3, 4, 5]}}
        result = assign({"a": ["t"], "b": ["t"], "c": ["t"]}, {"t": 6}, previous)
        assert partitions_of(result, "a") < {("t", p) for p in (0, 1, 2)}
        assert partitions_of(result, "b") < {("t", p) for p in (3, 4, 5)}
        assert len(partitions_of(result, "c")) == 2

    def test_no_members(self) -> None:
        assert assign({}, {"t": 3}) == {}


class TestHeterogeneous:
    def test_members_get_only_topics_they_subscribed_to(self) -> None:
        result = assign({"a": ["x"], "b": ["y"], "c": ["x", "y"]}, {"x": 2, "y": 2})
        assert set(result["a"]) <= {"x"} and set(result["b"]) <= {"y"}
        # Balance is per topic: c gets half of x and half of y.
        assert {t: len(p) for t, p in result["c"].items()} == {"x": 1, "y": 1}

    def test_sharing_is_computed_per_topic(self) -> None:
        result = assign({"a": ["x"], "b": ["x"], "c": ["y"]}, {"x": 1, "y": 3})
        assert result["a"] == result["b"] == {"x": frozenset({0})}
        assert result["c"] == {"y": frozenset({0, 1, 2})}


subscriptions = st.dictionaries(
    st.sampled_from([f"m{i}" for i in range(8)]),
    st.sets(st.sampled_from(["x", "y", "z"]), min_size=1),
    min_size=1,
)
counts = st.fixed_dictionaries({"x": st.integers(0, 6), "y": st.integers(0, 6), "z": st.integers(0, 3)})


@settings(max_examples=300, deadline=None)
@given(subscriptions, counts, st.data())
def test_assignment_properties(
    subs: dict[str, set[str]], partition_counts: dict[str, int], data: st.DataObject
) -> None:
    previous = data.draw(
        st.fixed_dictionaries(
            {
                member: st.dictionaries(
                    st.sampled_from(["x", "y", "z"]), st.lists(st.integers(0, 7), max_size=4)
                )
                for member in subs
            }
        )
    )
    result = assign(subs, partition_counts, previous)
    assert set(result) == set(subs)
    for member, topics in result.items():
        for topic, parts in topics.items():
            assert topic in subs[member]
            assert parts and all(0 <= p < partition_counts[topic] for p in parts)
    homogeneous = len({frozenset(s) for s in subs.values()}) == 1
    pools = (
        [(list(subs), sorted(next(iter(subs.values()))))]
        if homogeneous
        else [([m for m in subs if t in subs[m]], [t]) for t in sorted({t for s in subs.values() for t in s})]
    )
    for members, pool_topics in pools:
        pool = [(t, p) for t in pool_topics for p in range(partition_counts[t])]
        if not pool:
            continue
        sharing = -(-len(members) // len(pool))
        held = {m: {tp for tp in partitions_of(result, m) if tp in pool} for m in members}
        per_partition = Counter(tp for m in members for tp in held[m])
        sizes = [len(held[m]) for m in members]
        # Every partition is shared as desired and member counts differ by at most one.
        assert all(per_partition[tp] == sharing for tp in pool), (per_partition, sharing)
        assert max(sizes) - min(sizes) <= 1
    # Feeding the result back changes nothing: the assignment is stable.
    again = assign(subs, partition_counts, {m: {t: list(p) for t, p in a.items()} for m, a in result.items()})
    assert again == result


def test_a_member_left_short_by_the_greedy_fill_is_repaired() -> None:
    # Found by hypothesis: m2 gets the larger quota but both open slots are on its own partition.
    result = assign({"m1": ["z"], "m2": ["z"], "m3": ["z"]}, {"z": 2}, {"m3": {"z": [0]}, "m2": {"z": [1]}})
    assert holders(result) == Counter({("z", 0): 2, ("z", 1): 2})
    assert sorted(len(partitions_of(result, m)) for m in result) == [1, 1, 2]
