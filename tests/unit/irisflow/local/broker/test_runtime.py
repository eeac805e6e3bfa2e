"""Small pieces of the embedded broker runtime that need no JVM."""

from __future__ import annotations

from irisflow.local.broker.runtime import new_cluster_id


def testnew_cluster_ids_never_start_with_a_dash_that_the_format_tool_would_read_as_an_option() -> (
    None
):
    ids = [new_cluster_id() for _ in range(5000)]
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(i) == 22 for i in ids)
    assert len(set(ids)) == len(ids)
