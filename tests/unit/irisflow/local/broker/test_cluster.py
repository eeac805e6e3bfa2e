"""A local cluster's nodes: ports, folders and configuration (written, never started here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from irisflow.errors import KafkaRuntimeError
from irisflow.local.broker.cluster import KafkaCluster, broker_ports


def _properties(node_dir: Path) -> dict[str, str]:
    text = (node_dir / "server.properties").read_text()
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {key: value for key, value in pairs}


def _written(cluster: KafkaCluster) -> list[dict[str, str]]:
    for node in cluster.nodes:
        node._write_config()
    return [_properties(node.data_dir) for node in cluster.nodes]


def test_nodes_take_every_other_port_from_the_configured_pair() -> None:
    assert broker_ports(9092, 9093, 3) == [(9092, 9093), (9094, 9095), (9096, 9097)]


def test_one_node_is_the_single_broker_irisflow_always_ran(tmp_path: Path) -> None:
    cluster = KafkaCluster(libs=tmp_path, data_dir=tmp_path / "kafka", brokers=1)
    [props] = _written(cluster)

    assert cluster.nodes[0].data_dir == (tmp_path / "kafka").resolve()
    assert cluster.bootstrap == "127.0.0.1:9092"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert "min.insync.replicas" not in props  # no cluster-only settings on one broker
    assert "broker.session.timeout.ms" not in props


def test_three_nodes_form_one_quorum_with_replicated_internal_topics(tmp_path: Path) -> None:
    cluster = KafkaCluster(
        libs=tmp_path, data_dir=tmp_path / "kafka", brokers=3, port=19092, controller_port=19093
    )
    written = _written(cluster)

    assert cluster.bootstrap == "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"
    assert len({node.data_dir for node in cluster.nodes}) == 3
    assert all(node.data_dir.parent.name == "kafka-3-brokers" for node in cluster.nodes)
    voters = "1@127.0.0.1:19093,2@127.0.0.1:19095,3@127.0.0.1:19097"
    for number, props in enumerate(written, start=1):
        assert props["node.id"] == str(number)
        assert props["controller.quorum.voters"] == voters
        assert props["listeners"] == (
            f"PLAINTEXT://127.0.0.1:{19090 + 2 * number},"
            f"CONTROLLER://127.0.0.1:{19091 + 2 * number}"
        )
        assert props["offsets.topic.replication.factor"] == "3"
        assert props["transaction.state.log.min.isr"] == "2"
        assert props["default.replication.factor"] == "3"
        assert props["min.insync.replicas"] == "2"
        assert props["unclean.leader.election.enable"] == "false"


def test_two_nodes_replicate_twice_and_acknowledge_with_one(tmp_path: Path) -> None:
    cluster = KafkaCluster(libs=tmp_path, data_dir=tmp_path / "kafka", brokers=2)
    for props in _written(cluster):
        assert props["default.replication.factor"] == "2"
        assert props["min.insync.replicas"] == "1"


def test_nodes_formatted_for_different_clusters_are_refused_with_what_to_remove(
    tmp_path: Path,
) -> None:
    cluster = KafkaCluster(libs=tmp_path, data_dir=tmp_path / "kafka", brokers=2)
    for node, cluster_id in zip(cluster.nodes, ("AAAA", "BBBB"), strict=True):
        (node.data_dir / "logs").mkdir(parents=True)
        (node.data_dir / "logs" / "meta.properties").write_text(f"cluster.id={cluster_id}\n")

    with pytest.raises(KafkaRuntimeError, match="different clusters") as refused:
        cluster._share_cluster_id()
    assert "kafka-2-brokers" in str(refused.value)


def test_a_node_joining_later_gets_the_id_of_those_already_formatted(tmp_path: Path) -> None:
    cluster = KafkaCluster(libs=tmp_path, data_dir=tmp_path / "kafka", brokers=3)
    first = cluster.nodes[0]
    (first.data_dir / "logs").mkdir(parents=True)
    (first.data_dir / "logs" / "meta.properties").write_text("version=1\ncluster.id=XyZ\n")

    cluster._share_cluster_id()

    assert [node.cluster_id for node in cluster.nodes] == ["XyZ", "XyZ", "XyZ"]


def test_asking_for_a_broker_the_cluster_does_not_have_says_which_exist(tmp_path: Path) -> None:
    cluster = KafkaCluster(libs=tmp_path, data_dir=tmp_path / "kafka", brokers=3)
    with pytest.raises(KafkaRuntimeError, match="brokers 1 to 3"):
        cluster.node(4)
    assert cluster.node(3) is cluster.nodes[2]
