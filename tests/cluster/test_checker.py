"""The fault drills' checker counts what it should, on forged topics (no broker, fast).

Each count of :mod:`tests.cluster.checker` must be able to say "bad": a drill that passes
because its checker is blind proves nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from irisflow.settings import TopicNames
from irisflow.tracing import HEDGE_OF
from tests.cluster.checker import Call, Ledger, Rec, by_topic, check, lane_id

NAMES = TopicNames()
SETOSA = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def label_of(version: int, features: Mapping[str, float]) -> str | None:
    """A stand-in model: every version says setosa for short petals, virginica otherwise."""
    return "setosa" if features["petal_length"] < 2.5 else "virginica"


class Topics:
    """Forged topics: records appended in offset order per topic and partition."""

    def __init__(self) -> None:
        self.recs: list[Rec] = []

    def add(
        self,
        topic: str,
        key: str,
        body: Mapping[str, object],
        partition: int = 0,
        headers: tuple[tuple[str, bytes], ...] = (),
    ) -> None:
        offset = sum(1 for r in self.recs if (r.topic, r.partition) == (topic, partition))
        value = orjson.dumps(body)
        self.recs.append(Rec(topic, partition, offset, key.encode(), value, headers))

    def request(self, rid: str, partition: int = 0, sent_at: float = 1.0, **extra: object) -> None:
        body = {"request_id": rid, "features": SETOSA, "input_digest": "d", "sent_at": sent_at}
        self.add(NAMES.requests, rid, {**body, **extra}, partition)

    def answer(self, rid: str, label: str = "setosa", partition: int = 0, **extra: object) -> None:
        body = {"request_id": rid, "label": label, "model_version": 1, "input_digest": "d"}
        self.add(NAMES.predictions, rid, {**body, **extra}, partition)

    def feedback(self, rid: str, partition: int = 0) -> None:
        self.add(NAMES.feedback, rid, {"request_id": rid, "label": "setosa"}, partition)

    def labeled(self, rid: str, partition: int = 0) -> None:
        body = {"request_id": rid, "features": SETOSA, "true_label": "setosa"}
        self.add(NAMES.labeled, rid, body, partition)

    def version(self, version: int) -> None:
        self.add(NAMES.model_updates, "iris", {"model_name": "iris", "version": version})

    def served(self, rid: str, partition: int = 0) -> None:
        """A request answered, its feedback given and joined."""
        self.request(rid, partition)
        self.answer(rid, partition=partition)
        self.feedback(rid, partition)
        self.labeled(rid, partition)


def ledger_of(*rids: str, joined: bool = True) -> Ledger:
    ledger = Ledger(expect_joined=joined)
    for rid in rids:
        ledger.attempted.add(rid)
        ledger.accepted[rid] = Call(SETOSA, "setosa", 1)
        ledger.feedback[rid] = "setosa"
    return ledger


def counts(topics: Topics, ledger: Ledger, run: str | None = None) -> dict[str, tuple[int, ...]]:
    report = check(by_topic(topics.recs), NAMES, ledger, label_of, run=run)
    return {r.topic: (r.records, len(r.lost), r.duplicated, r.reordered) for r in report.rows}


RID = [lane_id("run", 0, seq) for seq in range(4)]


def test_a_clean_history_has_nothing_lost_duplicated_reordered_or_wrong() -> None:
    topics = Topics()
    for rid in RID:
        topics.served(rid)
    topics.version(1)
    report = check(by_topic(topics.recs), NAMES, ledger_of(*RID), label_of)
    assert report.failures() == []
    assert report.wrong == []
    assert all(r.duplicated == r.reordered == 0 and not r.lost for r in report.rows)
    assert report.row("requests").records == 4


def test_an_accepted_request_missing_from_the_topic_is_lost_and_fails() -> None:
    topics = Topics()
    for rid in RID[:3]:
        topics.served(rid)
    report = check(by_topic(topics.recs), NAMES, ledger_of(*RID), label_of)
    assert report.row("requests").lost == [RID[3]]
    assert report.row("predictions").lost == [RID[3]]
    assert any("requests: lost" in failure for failure in report.failures())


def test_a_request_on_the_topic_without_an_answer_is_lost_even_if_no_client_waited() -> None:
    topics = Topics()
    topics.served(RID[0])
    topics.request(RID[1])  # the client gave up, the record landed anyway
    ledger = ledger_of(RID[0])
    ledger.attempted.add(RID[1])
    assert counts(topics, ledger)["predictions"] == (1, 1, 0, 0)


def test_feedback_lost_and_feedback_never_joined_are_counted_apart() -> None:
    topics = Topics()
    topics.served(RID[0])
    topics.request(RID[1])
    topics.answer(RID[1])
    topics.feedback(RID[1])  # on the topic, never joined
    topics.request(RID[2])
    topics.answer(RID[2])  # its accepted feedback never reached the topic
    found = counts(topics, ledger_of(*RID[:3]))
    assert found["feedback"] == (2, 1, 0, 0)
    assert found["labeled"] == (1, 2, 0, 0)
    assert counts(topics, ledger_of(*RID[:3], joined=False))["labeled"] == (1, 0, 0, 0)


def test_the_same_content_twice_is_a_duplicate_whatever_its_timestamps() -> None:
    topics = Topics()
    topics.served(RID[0])
    topics.request(RID[0], sent_at=2.0)  # republished by a retry
    topics.answer(RID[0], latency_seconds=0.5)  # scored again
    hedge = {"request_id": RID[0], "features": SETOSA, "input_digest": "d", "sent_at": 1.0}
    topics.add(NAMES.requests, RID[0], hedge, 1, ((HEDGE_OF, b"0"),))  # a copy, no duplicate
    topics.answer(RID[0], partition=1)  # the hedged copy's answer, in the copy's partition
    found = counts(topics, ledger_of(RID[0]))
    assert found["requests"] == (3, 0, 1, 0)
    assert found["predictions"] == (3, 0, 2, 0)
    report = check(by_topic(topics.recs), NAMES, ledger_of(RID[0]), label_of)
    assert report.row("predictions").note.endswith("1 answers to hedged copies")


def test_a_lane_record_after_a_later_one_in_its_partition_is_reordered() -> None:
    topics = Topics()
    topics.served(RID[1])
    topics.served(RID[0])  # sent first, landed second
    topics.served(RID[2], partition=1)  # another partition: no order between partitions
    topics.served(lane_id("run", 1, 0))  # another lane: no order between lanes
    found = counts(topics, ledger_of(*RID[:3], lane_id("run", 1, 0)))
    assert {name: found[name][3] for name in ("requests", "predictions", "feedback")} == {
        "requests": 1,
        "predictions": 1,
        "feedback": 1,
    }


def test_a_request_answered_by_its_hedged_copy_may_see_its_original_answered_late() -> None:
    """The lane sent its next request once the copy answered; the original's answer, held up
    with its partition, comes after the next one's (and so does its labeled sample, joined with
    the original): not a reordering."""
    topics = Topics()
    topics.request(RID[0])
    topics.add(NAMES.requests, RID[0], {"request_id": RID[0]}, 1, ((HEDGE_OF, b"0"),))
    topics.answer(RID[0], partition=1)
    topics.served(RID[1])
    topics.answer(RID[0])
    topics.feedback(RID[0])
    topics.labeled(RID[0])
    found = counts(topics, ledger_of(*RID[:2]))
    assert found["predictions"] == (3, 0, 1, 0)
    assert found["labeled"] == (2, 0, 0, 0)  # joined when the original was scored: late too


def test_an_answer_the_model_would_not_give_or_to_other_input_is_wrong() -> None:
    topics = Topics()
    topics.request(RID[0])
    topics.answer(RID[0], label="virginica")
    topics.request(RID[1])
    topics.answer(RID[1], input_digest="someone else's")
    report = check(by_topic(topics.recs), NAMES, ledger_of(joined=False), label_of)
    assert len(report.wrong) == 2
    assert any("wrong answer" in failure for failure in report.failures())


def test_an_answer_told_over_http_is_held_against_the_model_too() -> None:
    topics = Topics()
    topics.served(RID[0])
    ledger = ledger_of(RID[0])
    ledger.accepted[RID[0]] = Call(SETOSA, "versicolor", 1)
    assert len(check(by_topic(topics.recs), NAMES, ledger, label_of).wrong) == 1


def test_model_versions_published_twice_out_of_order_or_missing_are_counted() -> None:
    topics = Topics()
    for version in (1, 3, 2, 3):
        topics.version(version)
    ledger = Ledger(versions={1, 2, 3, 4})
    row = check(by_topic(topics.recs), NAMES, ledger, label_of).row("model-updates")
    assert (row.records, row.lost, row.duplicated, row.reordered) == (4, ["4"], 1, 1)


def test_a_run_counts_only_its_own_request_ids_on_a_shared_stack() -> None:
    topics = Topics()
    topics.served(RID[0])
    topics.request(lane_id("other", 0, 0))  # another drill's, unanswered: not this run's
    assert counts(topics, ledger_of(RID[0]), run="run")["predictions"] == (1, 0, 0, 0)
    assert counts(topics, ledger_of(RID[0]))["predictions"] == (1, 1, 0, 0)


def test_the_table_names_every_topic_and_what_the_clients_saw() -> None:
    topics = Topics()
    topics.served(RID[0])
    ledger = ledger_of(RID[0])
    ledger.retried["503 kafka_unavailable"] = 2
    table = check(by_topic(topics.recs), NAMES, ledger, label_of).table("drill", "took 1 s")
    assert "| requests | 1 | 0 | 0 | 0 |" in table
    assert "503 kafka_unavailable x2" in table
    assert table.rstrip().endswith("took 1 s")
    for name in ("predictions", "feedback", "labeled", "model-updates", "dead-letters"):
        assert f"| {name} |" in table
