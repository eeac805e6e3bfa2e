"""What an unauthenticated client can make a real gateway process spend (issue #10, finding 6).

One gateway and one worker on the session broker; the gateway's resident memory is read from
``/proc/<pid>/status`` after a warm-up (the baseline), then the inputs of the finding are sent:
a 16.8 MB batch (plain and chunked), a 750 KB body with 50,000 unknown feature names, and 150
distinct 1,000-instance answers (≈130 KB of JSON each, ≈20 MB in all) with the answer cache
bounded at 4 MiB.

The bound: the peak (``VmHWM``) may exceed the baseline by at most 64 MiB. Measured on the
reference machine: +3 MB after the big batches (refused before parsing), +11 MB peak after the
wide bodies, +34 MB peak after the answers (transient parsing of 100 KB bodies on four
concurrent connections, plus the 4 MiB cache). Before the fixes each input alone went past it:
parsing the 16.8 MB batch builds ~200,000 dicts (hundreds of MB), the wide body answered 11.7 MB
of JSON, and 150 remembered 1,000-instance answers as objects are ~75 MB.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest

from tests.e2e.conftest import Stack, launch_stack, stop_all
from tests.factories import SETOSA

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

MiB = 1024 * 1024
GROWTH_BOUND = 64 * MiB
JSON = {"content-type": "application/json"}


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {key} in /proc/{pid}/status")


def _memory(stack: Stack) -> tuple[int, int]:
    """``(resident, peak resident)`` bytes of the gateway process."""
    pid = stack.processes["gateway"].pid
    return _status_kib(pid, "VmRSS") * 1024, _status_kib(pid, "VmHWM") * 1024


def _instances(n: int, seed: int) -> list[dict[str, float]]:
    rng = random.Random(seed)
    return [{k: round(v + rng.random() * 0.1, 3) for k, v in SETOSA.items()} for _ in range(n)]


@pytest.fixture(scope="module")
def memory_stack(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Iterator[Stack]:
    stack = launch_stack(
        tmp_path_factory.mktemp("gateway-memory"),
        kafka_bootstrap,
        **{"gateway.answer_cache_bytes": 4 * MiB, "gateway.predict_timeout_seconds": 30.0},
    )
    try:
        yield stack
    finally:
        stop_all(stack)


def test_oversized_and_high_cardinality_inputs_keep_the_gateway_within_its_bound(
    memory_stack: Stack,
) -> None:
    url = memory_stack.gateway_url
    warm = {"instances": _instances(1000, 0), "request_id": "warm-up"}
    for _ in range(3):  # lazy imports and first allocations belong to the baseline
        assert httpx.post(f"{url}/v1/predict/batch", json=warm, timeout=60).status_code == 200
    _, baseline = _memory(memory_stack)

    big = orjson.dumps({"instances": _instances(200_000, 1)})
    assert 16 * 10**6 < len(big) < 18 * 10**6
    for _ in range(3):
        response = httpx.post(f"{url}/v1/predict/batch", content=big, headers=JSON, timeout=60)
        assert response.status_code == 413
    chunked = (big[i : i + 64 * 1024] for i in range(0, len(big), 64 * 1024))
    response = httpx.post(f"{url}/v1/predict/batch", content=chunked, headers=JSON, timeout=60)
    assert response.status_code == 413

    wide = orjson.dumps({"features": {**SETOSA, **{f"unk{i:05d}": 1.0 for i in range(50_000)}}})
    assert len(wide) > 700_000
    for _ in range(3):
        response = httpx.post(f"{url}/v1/predict", content=wide, headers=JSON, timeout=60)
        assert response.status_code == 422
        assert len(response.content) < 8 * 1024

    def answer(i: int) -> int:
        body = {"instances": _instances(1000, 100 + i), "request_id": f"distinct-{i}"}
        return httpx.post(f"{url}/v1/predict/batch", json=body, timeout=60).status_code

    with ThreadPoolExecutor(4) as pool:
        assert set(pool.map(answer, range(150))) == {200}

    resident, peak = _memory(memory_stack)
    assert peak - baseline < GROWTH_BOUND, (
        f"peak {peak / MiB:.0f} MiB, baseline {baseline / MiB:.0f} MiB"
    )
    assert resident - baseline < GROWTH_BOUND
