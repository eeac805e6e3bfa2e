"""The dashboard in a real browser (Debian's Chromium, headless, driven by Playwright).

The page runs against a stack of its own, seeded with minutes of made-up history so that the
charts have something to draw: that history must not reach any other test's statistics.

It loads with nothing but the gateway (every request the page makes goes to the gateway: no
CDN), sends a prediction through the form and shows the answer with its probabilities, draws
the four charts, lists the live predictions and the model versions, and sends a retrain request
with the API key. A screenshot goes to ``test-artifacts/dashboard.png``.

The rollout panel is shown a state published to the stack's rollouts topic as the rollout
controller would (a shadow rollout with both versions' readings and its decisions); its
screenshot goes to ``test-artifacts/dashboard-rollout.png``.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.audit.feed import feedback_row, prediction_row, request_row
from gateway.audit.store import AuditBatch, AuditStore, audit_url
from irisflow.kafka.clients import make_producer
from irisflow.schemas import DriftEvent, Feedback, Prediction, PredictionRequest, RolloutStage
from tests.conftest import ROOT
from tests.e2e.conftest import GATEWAY_API_KEY, GATEWAY_SETTINGS, Stack, launch_stack, stop_all
from tests.factories import SETOSA, VIRGINICA, model_update
from tests.rollout_controller import publish_states
from tests.rollout_samples import rollout_state, step

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"
CHARTS = ["chart-throughput", "chart-latency", "chart-accuracy", "chart-drift"]
VERSICOLOR = {"sepal_length": 5.9, "sepal_width": 2.8, "petal_length": 4.3, "petal_width": 1.3}


def _history(stack: Stack, minutes: int = 9) -> None:
    """Past traffic written straight into the audit database, as its feed would have: petal
    widths creep up and accuracy falls, so the charts have a story to tell in the screenshot."""
    rng = random.Random(7)
    samples = [("setosa", SETOSA), ("virginica", VIRGINICA), ("versicolor", VERSICOLOR)]
    classes = [name for name, _ in samples]
    now, count = time.time(), minutes * 30
    batch = AuditBatch()
    for i in range(count):
        sent = now - minutes * 60 + i * 2 + rng.random()
        if rng.random() > 0.65 + 0.35 * math.sin(i / 25):
            continue  # traffic comes in waves
        drift = (i / count) ** 2
        truth, base = samples[i % 3]
        features = {k: round(v + rng.gauss(0, 0.15), 2) for k, v in base.items()}
        features["petal_width"] = round(features["petal_width"] + 1.5 * drift, 2)
        wrong = rng.random() < 0.03 + 0.35 * drift
        label = rng.choice([c for c in classes if c != truth]) if wrong else truth
        probabilities = {c: 0.9 if c == label else 0.05 for c in classes}
        latency = rng.uniform(0.003, 0.012) + (0.03 if rng.random() < 0.05 else 0.0)
        rid = f"history-{i}-{uuid.uuid4().hex[:6]}"
        request = PredictionRequest(request_id=rid, features=features, sent_at=sent)
        answer = Prediction(
            request_id=rid,
            label=label,
            probabilities=probabilities,
            model_version=1,
            latency_seconds=latency,
            scored_at=sent + latency,
        )
        batch.requests.append(request_row(request))
        batch.predictions.append(prediction_row(answer))
        if i % 2 == 0:
            feedback = Feedback(request_id=rid, label=truth, labeled_at=sent + 20)
            batch.feedback.append(feedback_row(feedback))
    store = AuditStore(audit_url(stack.settings.gateway.audit_url, stack.settings.home))
    try:
        store.write(batch)
    finally:
        store.close()


def _seed(stack: Stack) -> None:
    """Traffic, feedback (a few wrong) and a drift alarm, so every chart has something to draw."""
    _history(stack)
    url = stack.gateway_url
    samples = [("setosa", SETOSA), ("virginica", VIRGINICA), ("versicolor", VERSICOLOR)]
    for i in range(24):
        truth, features = samples[i % 3]
        rid = f"seed-{i}-{uuid.uuid4().hex[:6]}"
        response = httpx.post(
            f"{url}/v1/predict", json={"features": features, "request_id": rid}, timeout=30
        )
        assert response.status_code == 200, response.text
        label = truth if i % 5 else "versicolor"
        feedback = httpx.post(
            f"{url}/v1/feedback", json={"request_id": rid, "label": label}, timeout=30
        )
        assert feedback.status_code == 202, feedback.text

    async def alarm() -> None:
        producer = make_producer(stack.settings.kafka)
        await producer.start()
        try:
            event = DriftEvent(
                model_name=stack.settings.model_name,
                model_version=1,
                feature="petal_width",
                detector="ks",
                statistic=0.31,
                threshold=0.15,
                window=500,
            )
            await producer.send_and_wait(
                stack.settings.kafka.topics.drift_events,
                key=b"petal_width/ks",
                value=event.to_bytes(),
            )
        finally:
            await producer.stop()

    asyncio.run(alarm())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        stats = httpx.get(f"{url}/v1/stats", timeout=10).json()
        if stats["totals"]["feedback"] >= 24 and stats["drift_events"]:
            return
        time.sleep(0.3)
    raise AssertionError("the audit did not catch up with the seeded traffic")


@pytest.fixture(scope="module")
def dashboard_stack(
    tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str
) -> Iterator[Stack]:
    """A worker and a gateway of the dashboard's own: the made-up history goes into this audit
    database only, never into the shared gateway's, whose statistics other tests assert on."""
    stack = launch_stack(
        tmp_path_factory.mktemp("dashboard-stack"), kafka_bootstrap, **GATEWAY_SETTINGS
    )
    try:
        yield stack
    finally:
        stop_all(stack)


@pytest.fixture(scope="module")
def seeded(dashboard_stack: Stack) -> Stack:
    _seed(dashboard_stack)  # before Playwright runs its event loop in this thread
    return dashboard_stack


@pytest.fixture(scope="module")
def browser(seeded: Stack) -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (make test does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


def test_the_dashboard_predicts_and_draws_its_charts(seeded: Stack, browser: object) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    url = seeded.gateway_url
    page = browser.new_page(viewport={"width": 1440, "height": 1100})
    requested: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))

    page.goto(f"{url}/")
    expect(page.locator("#predict-button")).to_be_enabled(timeout=30_000)
    expect(page.locator("#pill-kafka")).to_have_text("Kafka ok", timeout=15_000)
    for name, value in VIRGINICA.items():
        page.fill(f"#feature-{name}", str(value))
    page.click("#predict-button")
    expect(page.locator("#result-label")).to_have_text("virginica", timeout=30_000)
    expect(page.locator("#result-probabilities .bar")).to_have_count(3)
    expect(page.locator("#result-meta")).to_contain_text("model v1")

    page.wait_for_function("document.body.dataset.chartsDrawn === 'true'", timeout=30_000)
    for chart in CHARTS:
        drawn = page.evaluate(
            """(id) => {
                const chart = Chart.getChart(id);
                const points = chart.data.datasets.flatMap((d) => d.data).filter((v) => v != null);
                const canvas = document.getElementById(id);
                const pixels = canvas.getContext("2d")
                    .getImageData(0, 0, canvas.width, canvas.height).data;
                let ink = 0;
                for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) ink++;
                return {points: points.length, ink};
            }""",
            chart,
        )
        assert drawn["points"] > 0, chart
        assert drawn["ink"] > 1000, chart

    expect(page.locator("#feed-body tr").first).not_to_contain_text("no predictions yet")
    expect(page.locator("#models-body tr.live")).to_contain_text("v1")
    expect(page.locator("#drift-events")).to_contain_text("petal_width")

    page.fill("#api-key", GATEWAY_API_KEY)
    page.click("#retrain-button")
    expect(page.locator("#admin-status")).to_contain_text("accepted", timeout=15_000)

    page.wait_for_timeout(3500)  # one more poll, so the screenshot shows the latest feed
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000

    outside = [u for u in requested if not u.startswith(url)]
    assert outside == [], f"the page reached beyond the gateway: {outside}"
    assert problems == []


def test_the_rollout_panel_shows_the_stage_both_versions_and_the_decisions(
    seeded: Stack, browser: object
) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    reason = "agreement 0.969 >= 0.95 on 640 paired requests; moving to shadow at 50%"
    steps = [
        step(RolloutStage.SHADOW, share=0.1, decided_by="api", reason="started from the API"),
        step(RolloutStage.SHADOW, share=0.5, reason=reason),
    ]
    state = rollout_state(
        RolloutStage.SHADOW,
        model_name=seeded.settings.model_name,
        candidate=model_update(2, kind="naive_bayes"),
        share=0.5,
        steps=steps,
    )
    publish_states(seeded.settings.kafka, state)
    page = browser.new_page(viewport={"width": 1440, "height": 1100})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(f"{seeded.gateway_url}/")

    expect(page.locator("#rollout-stage")).to_have_text("shadow", timeout=30_000)
    expect(page.locator("#rollout-summary")).to_contain_text("candidate v2 (naive_bayes)")
    expect(page.locator("#rollout-summary")).to_contain_text("share 50.0%")
    expect(page.locator("#rollout-head")).to_contain_text("champion v1")
    expect(page.locator("#rollout-head")).to_contain_text("candidate v2")
    rows = page.locator("#rollout-body tr")
    expect(rows.filter(has_text="agreement with champion")).to_contain_text("96.9%")
    labeled = rows.filter(has_text="accuracy, labeled")
    expect(labeled).to_contain_text("95.0% (80 labels)")
    expect(labeled.locator("td.better")).to_have_text("96.3% (80 labels)")
    estimated = rows.filter(has_text="accuracy, estimated")
    expect(estimated).to_contain_text("91.5%")
    expect(rows.filter(has_text="worker latency p99")).to_contain_text("5.1 ms")
    expect(rows.filter(has_text="error rate")).to_contain_text("0.5% (3)")
    decisions = page.locator("#rollout-steps li")
    expect(decisions).to_have_count(2)
    expect(decisions.last).to_contain_text(reason)
    expect(decisions.first).to_contain_text("by api")
    expect(page.locator("#rollout-abort")).to_be_enabled()

    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#rollout-card").screenshot(path=str(ARTIFACTS / "dashboard-rollout.png"))
    assert problems == []
