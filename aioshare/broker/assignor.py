"""Kafka's SimpleAssignor for share groups (semantics doc, section 2.6), as a pure function.

Rules: with M members and P partitions in a pool, each partition is shared by
``ceil(M / P)`` members; member partition counts differ by at most one; balance wins over
stickiness, but partitions a member already has are kept where the rules allow.

When all members subscribe to the same topics (homogeneous) the pool is every partition of
those topics; otherwise (heterogeneous) each topic is its own pool with its own subscribers,
so a member subscribed to two topics gets its share of each (as in Kafka's builders).

Kafka breaks ties by Java hash-map iteration order; we break them deterministically (member
id, then topic and partition order) and give the larger quotas to the members that already
hold the most partitions, which keeps more of the previous assignment. Where Kafka's greedy
fill can leave a member short, we repair it so balance always holds.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

ASSIGNOR_NAME = "simple"

TopicPartitionKey = tuple[str, int]
MemberAssignment = dict[str, frozenset[int]]


def assign(
    subscriptions: Mapping[str, Collection[str]],
    partition_counts: Mapping[str, int],
    previous: Mapping[str, Mapping[str, Collection[int]]] | None = None,
) -> dict[str, MemberAssignment]:
    """Compute the target assignment.

    ``subscriptions``: member id -> subscribed topic names. ``partition_counts``: topic name ->
    partition count, for topics that exist (others are simply not assigned). ``previous``:
    member id -> topic name -> partitions, the current target assignment (for stickiness).
    Returns every member, with topic name -> partitions (topics with no partitions omitted).
    """
    previous = previous or {}
    members = sorted(subscriptions)
    result: dict[str, dict[str, set[int]]] = {member: {} for member in members}
    subscribed_sets = {member: frozenset(subscriptions[member]) for member in members}
    if not members:
        return {}
    homogeneous = len(set(subscribed_sets.values())) == 1
    if homogeneous:
        topics = sorted(topic for topic in subscribed_sets[members[0]] if topic in partition_counts)
        pools = [(members, topics)]
    else:
        all_topics = sorted({topic for topics in subscribed_sets.values() for topic in topics})
        pools = [
            ([member for member in members if topic in subscribed_sets[member]], [topic])
            for topic in all_topics
            if topic in partition_counts
        ]
    for pool_members, pool_topics in pools:
        pool = [(topic, partition) for topic in pool_topics for partition in range(partition_counts[topic])]
        held_before = {member: _previous_in_pool(previous.get(member, {}), pool) for member in pool_members}
        for member, partitions in _assign_pool(pool_members, pool, held_before).items():
            for topic, partition in partitions:
                result[member].setdefault(topic, set()).add(partition)
    return {
        member: {topic: frozenset(partitions) for topic, partitions in topics.items()}
        for member, topics in result.items()
    }


def _previous_in_pool(
    assignment: Mapping[str, Collection[int]], pool: list[TopicPartitionKey]
) -> set[TopicPartitionKey]:
    pool_set = set(pool)
    return {
        (topic, partition)
        for topic, partitions in assignment.items()
        for partition in partitions
        if (topic, partition) in pool_set
    }


def _assign_pool(
    members: list[str], pool: list[TopicPartitionKey], held_before: dict[str, set[TopicPartitionKey]]
) -> dict[str, set[TopicPartitionKey]]:
    held: dict[str, set[TopicPartitionKey]] = {member: set() for member in members}
    if not members or not pool:
        return held
    sharing = -(-len(members) // len(pool))
    total = sharing * len(pool)
    base, extra = divmod(total, len(members))
    # Larger quotas go to members keeping the most partitions: fewer moves.
    by_retained = sorted(members, key=lambda member: (-len(held_before[member]), member))
    quota = {member: base + (1 if rank < extra else 0) for rank, member in enumerate(by_retained)}

    holders: dict[TopicPartitionKey, set[str]] = {partition: set() for partition in pool}
    for member in members:
        for partition in sorted(held_before[member]):
            holders[partition].add(member)
            held[member].add(partition)

    def surplus(member: str) -> int:
        return len(held[member]) - quota[member]

    # 1. Partitions shared more than desired lose their most overfilled holders.
    for partition in pool:
        while len(holders[partition]) > sharing:
            victim = max(holders[partition], key=lambda member: (surplus(member), member))
            holders[partition].discard(victim)
            held[victim].discard(partition)
    # 2. Members above quota give up their most shared partitions.
    for member in members:
        while surplus(member) > 0:
            dropped = max(held[member], key=lambda partition: (len(holders[partition]), partition))
            held[member].discard(dropped)
            holders[dropped].discard(member)
    # 3. Fill every member up to its quota with the least shared partitions it does not hold.
    for member in sorted(members, key=lambda member: (surplus(member), member)):
        while surplus(member) < 0:
            open_partitions = [key for key in pool if len(holders[key]) < sharing]
            if not open_partitions:
                break
            options = [key for key in open_partitions if member not in holders[key]]
            if options:
                _give(member, min(options, key=lambda key: (len(holders[key]), key)), holders, held)
                continue
            # Every open partition is already this member's. Demand equals supply, so some full
            # partition lacks the member: one of its holders moves to an open partition and the
            # member takes its place (Kafka tolerates the imbalance; we repair it).
            target = open_partitions[0]
            full = next(key for key in pool if member not in holders[key])
            mover = min(holders[full] - holders[target])
            holders[full].discard(mover)
            held[mover].discard(full)
            _give(mover, target, holders, held)
            _give(member, full, holders, held)
    return held


def _give(
    member: str,
    partition: TopicPartitionKey,
    holders: dict[TopicPartitionKey, set[str]],
    held: dict[str, set[TopicPartitionKey]],
) -> None:
    holders[partition].add(member)
    held[member].add(partition)
