"""Prometheus metrics, scraped over HTTP and parsed with `prometheus_client.parser`.

The bot's figures (queue, waits, outcomes, iterations, commands, refused pictures, workers idle,
busy or gone) follow what the workers report, so they are tested through the seam below the bot:
the real bot against the fake Discord with the workers' transport replaced by the test's puppets
(`tests.fake_workers`), which join, report, finish and leave when the test says. A worker's own
figures are served by the worker process: those are scraped from real workers drawing real jobs
on the tiny models, the local worker's and a Redis worker's.

The dashboard's expressions are checked against what those scrapes hold, and the Prometheus
config by `promtool check config` (Debian's `prometheus` package has it; pip has none) and by
reading it and checking its structure.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import aiohttp
import jsonschema
import pytest
import yaml
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from bot.config import ConfigError, load_config
from bot.ops.metrics import OTHER_REFUSAL, REFUSALS
from generator.contract.metrics import METRICS_BIND_ENV
from generator.contract.reasons import PROMPT_MEANING
from generator.worker.metrics import GPU_METRICS, JOBS_IN_BATCH, STEP_SECONDS
from generator.worker.redis_streams import parse

from .bot_harness import (
    bot_with_puppets,
    run,
    running_bot,
    start_bot,
    wait_for_job,
    write_config,
)
from .conftest import ModelFiles
from .fake_discord import ADMIN, ALICE, BOB, FakeDiscord
from .fake_workers import FakeWorkers
from .redis_harness import RedisServer, WorkerProcess
from .test_bot_images import refuse_each

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "docker/grafana/pseudo-dalle.json"
PROMETHEUS = ROOT / "docker/prometheus/prometheus.yml"
# Long enough never to end by itself on any machine: these jobs end when they are cancelled.
ENDLESS_LIMITS = "max_iterations = 100000"
ENDLESS_DEFAULTS = "max_iterations = 100000\nmax_queued_per_user = 2\nprogress_interval_s = 2"
Families = dict[str, Metric]


# -- scraping ----------------------------------------------------------------------------------
async def scrape(url: str) -> Families:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200, await response.text()
        text = await response.text()
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample(families: Families, name: str, **labels: str) -> float | None:
    """The value of sample `name` with (at least) `labels`; None when there is none."""
    for family in families.values():
        for found in family.samples:
            if found.name == name and labels.items() <= found.labels.items():
                return float(found.value)
    return None


def value(families: Families, name: str, **labels: str) -> float:
    found = sample(families, name, **labels)
    assert found is not None, f"{name}{labels} is not in the scrape"
    return found


async def poll(
    url: str,
    check: Callable[[Families], bool],
    timeout: float = 90,
    seen: list[Families] | None = None,
) -> Families:
    """Scrape `url` until `check` holds (a server not yet listening is tried again); every
    scrape is added to `seen`."""
    deadline = time.monotonic() + timeout
    last: Families | None = None
    while time.monotonic() < deadline:
        try:
            last = await scrape(url)
        except aiohttp.ClientConnectionError:
            await asyncio.sleep(0.1)
            continue
        if seen is not None:
            seen.append(last)
        if check(last):
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never showed what was waited for; last scrape: {last}")


def free_ports(count: int) -> list[int]:
    """`count` different free loopback ports (an address in the config cannot say port 0)."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def listening(pid: int) -> set[tuple[str, int]]:
    """The TCP ports process `pid` listens on and its bound UDP ports, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = set()
    for table, state in (("tcp", "0A"), ("tcp6", "0A"), ("udp", "07"), ("udp6", "07")):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == state and fields[9] in inodes:
                found.add((table, int(fields[1].rsplit(":", 1)[1], 16)))
    return found


def workers(families: Families) -> dict[str, float]:
    return {
        state: value(families, "pseudo_dalle_workers", state=state)
        for state in ("idle", "busy", "gone")
    }


def outcomes(families: Families) -> dict[str, float]:
    return {
        outcome: value(families, "pseudo_dalle_jobs_total", outcome=outcome)
        for outcome in ("succeeded", "failed", "cancelled", "requeued")
    }


def metrics_at(port: int) -> str:
    return f'bind = "127.0.0.1:{port}"'


# -- the dashboard -----------------------------------------------------------------------------
def dashboard_metrics() -> set[str]:
    """Every metric named in the dashboard's queries, histograms by their base name."""
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for row in dashboard["panels"] for p in (row, *row.get("panels", []))]
    queries = [target["expr"] for panel in panels for target in panel.get("targets", [])]
    assert queries, "the dashboard has no queries"
    names = set()
    for query in queries:
        for name in re.findall(r"\b(?:pseudo_dalle|discord)_[a-z_]+\b", query):
            names.add(re.sub(r"_(bucket|sum|count)$", "", name))
    return names


def scraped_names(*scrapes: Families) -> set[str]:
    return {
        name
        for families in scrapes
        for family in families.values()
        for name in (family.name, *(s.name for s in family.samples))
    }


def test_dashboard_names_its_gpu_metrics_as_the_worker_defines_them() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] == "pseudo-dalle"
    gpu = {name for name in dashboard_metrics() if "gpu" in name or "cuda" in name}
    assert gpu, "the dashboard shows no GPU figure"
    assert gpu <= set(GPU_METRICS)
    sources = {
        target["datasource"]["uid"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    }
    provisioned = yaml.safe_load(
        (ROOT / "docker/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    assert sources == {source["uid"] for source in provisioned["datasources"]}


def test_prometheus_config_scrapes_the_bot_and_the_workers() -> None:
    """Read as Prometheus would (its structure; promtool checks the rest): every job has a
    name, a static or DNS target list and, for the bot's and workers', the ports that
    docker-compose.monitoring.yml gives them."""
    config = yaml.safe_load(PROMETHEUS.read_text())
    assert set(config) <= {"global", "scrape_configs", "rule_files", "alerting"}
    assert re.fullmatch(r"\d+[smh]", config["global"]["scrape_interval"])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert len(jobs) == len(config["scrape_configs"])
    ports = set()
    for job in jobs.values():
        assert set(job) <= {"job_name", "static_configs", "dns_sd_configs", "metrics_path"}
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                assert host
                assert 0 < int(port) < 65536
                ports.add(int(port))
        for dns in job.get("dns_sd_configs", []):
            assert dns["type"] == "A"
            assert dns["names"]
            assert 0 < dns["port"] < 65536
            ports.add(dns["port"])
    assert {"pseudo-dalle-bot", "pseudo-dalle-workers"} <= set(jobs)
    compose = yaml.safe_load((ROOT / "docker-compose.monitoring.yml").read_text())
    environment = compose["services"]["worker"]["environment"]
    worker_port = int(environment[METRICS_BIND_ENV].rsplit(":", 1)[1])
    bot_config = load_config(ROOT / "docker/prometheus/bot.toml", require_token=False)
    bot_port = int(bot_config.metrics.bind.rsplit(":", 1)[1])
    assert {bot_port, worker_port} <= ports
    assert bot_config.worker.metrics_bind.endswith(f":{worker_port}")


def test_prometheus_config_passes_promtool() -> None:
    assert shutil.which("promtool"), "promtool is missing: install Debian's prometheus package"
    checked = subprocess.run(
        ["promtool", "check", "config", "--syntax-only", str(PROMETHEUS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_monitoring_compose_file_follows_the_specification_and_mounts_what_exists() -> None:
    schema = json.loads((ROOT / "tests/data/compose_spec.json").read_text())
    compose = yaml.safe_load((ROOT / "docker-compose.monitoring.yml").read_text())
    jsonschema.Draft201909Validator(schema).validate(compose)
    mounted = [
        volume.split(":")[0]
        for service in compose["services"].values()
        for volume in service.get("volumes", [])
        if volume.startswith("./")
    ]
    assert "./docker/grafana/pseudo-dalle.json" in mounted
    missing = [path for path in mounted if not (ROOT / path).exists()]
    assert missing == []


def test_the_image_config_with_metrics_differs_from_the_image_config_only_in_them() -> None:
    image = load_config(ROOT / "docker/config.toml", require_token=False)
    monitored = load_config(ROOT / "docker/prometheus/bot.toml", require_token=False)
    assert monitored.metrics.bind
    assert monitored.worker.metrics_bind
    same = monitored.model_copy(
        update={
            "metrics": image.metrics,
            "worker": monitored.worker.model_copy(update={"metrics_bind": ""}),
            "path": image.path,
        }
    )
    assert same == image


# -- where metrics are served ------------------------------------------------------------------
@pytest.mark.parametrize("bind", ["9464", "localhost", "127.0.0.1:0", "127.0.0.1:99999", "[::1"])
def test_an_address_that_is_not_host_and_port_is_refused(tmp_path: Path, bind: str) -> None:
    config = tmp_path / "config.toml"
    for section, key in (("metrics", "bind"), ("worker", "metrics_bind")):
        config.write_text(f'[{section}]\n{key} = "{bind}"\n')
        with pytest.raises(ConfigError, match=rf"\[{section}\] {key} must be HOST:PORT"):
            load_config(config, require_token=False)


def test_a_redis_worker_takes_its_address_from_the_option_or_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(METRICS_BIND_ENV, raising=False)
    assert parse([]).metrics_bind == ""
    monkeypatch.setenv(METRICS_BIND_ENV, "0.0.0.0:9465")
    assert parse([]).metrics_bind == "0.0.0.0:9465"
    assert parse(["--metrics-bind", "[::1]:9466"]).metrics_bind == "[::1]:9466"
    monkeypatch.setenv(METRICS_BIND_ENV, "everywhere")
    with pytest.raises(SystemExit):
        parse([])
    assert "must be HOST:PORT" in capsys.readouterr().err


@pytest.mark.e2e
@pytest.mark.slow
def test_with_metrics_off_nothing_listens(model_files: ModelFiles, tmp_path: Path) -> None:
    """The default: neither the bot nor its worker's process listens on any port. The bot runs
    in this process, so what this process listens on must not change when it starts."""

    async def scenario() -> None:
        fake = FakeDiscord()
        await fake.start()
        before = listening(os.getpid())
        assert ("tcp", fake.port) in before
        config = load_config(write_config(tmp_path, fake, model_files), environ={})
        bot = await start_bot(config, fake)
        try:
            pid = await bot.worker_pid()
            assert listening(os.getpid()) == before
            assert listening(pid) == set()
        finally:
            await bot.stop()
            await fake.stop()

    run(scenario())


# -- the bot's figures, through the seam -------------------------------------------------------
@pytest.mark.e2e
def test_refused_pictures_are_counted_by_reason(model_files: ModelFiles, tmp_path: Path) -> None:
    """Each refusal of bot.jobs.pictures and generator.intake, declared or found on fetching,
    under its reason; every reason is seen, and no job is drawn."""
    (port,) = free_ports(1)
    reasons = {
        "bomb.png": "too_many_pixels",
        "bomb-said.png": "too_many_pixels",
        "old.bmp": "format",
        "bmp.png": "format",
        "words.png": "format",
        "cut.jpg": "damaged",
        "huge.png": "too_big",
        "liar.png": "too_big",
        "gone.png": "not_fetched",
        "slow.png": "timed_out",
    }

    async def scenario() -> None:
        async with bot_with_puppets(
            tmp_path, model_files, images="fetch_timeout_s = 1", metrics=metrics_at(port)
        ) as (fake, running, _, _):
            await refuse_each(fake)
            counted = await scrape(f"http://127.0.0.1:{port}/metrics")
            expected = {**Counter(reasons.values()), "not_from_discord": 1, OTHER_REFUSAL: 0}
            assert set(expected) == {*REFUSALS.values(), OTHER_REFUSAL}
            assert {
                reason: value(counted, "pseudo_dalle_image_inputs_rejected_total", reason=reason)
                for reason in expected
            } == expected
            assert running.store.job(1) is None

    run(scenario())


@pytest.mark.e2e
def test_bot_metrics_follow_the_jobs(model_files: ModelFiles, tmp_path: Path) -> None:
    (port,) = free_ports(1)
    url = f"http://127.0.0.1:{port}/metrics"

    async def scenario() -> None:
        async with bot_with_puppets(tmp_path, model_files, metrics=metrics_at(port)) as (
            fake,
            running,
            config,
            puppets,
        ):
            store = running.store
            assert ("tcp", port) in listening(os.getpid())
            alone = await scrape(url)
            assert workers(alone) == {"idle": 0, "busy": 0, "gone": 0}
            puppets.join(clip_models=(config.models.clip,))
            before = await poll(url, lambda m: workers(m)["idle"] == 1)
            assert workers(before) == {"idle": 1, "busy": 0, "gone": 0}
            assert outcomes(before) == dict.fromkeys(outcomes(before), 0)
            assert value(before, "pseudo_dalle_commands_total", command="draw") == 0

            await fake.reply_to(
                await fake.command(ALICE, "draw", prompt="long", iterations=40, size=64)
            )
            await fake.reply_to(
                await fake.command(BOB, "draw", prompt="short", iterations=20, size=64)
            )
            await puppets.next_job(1)
            puppets.progress(1, 4, 40)
            puppets.progress(1, 9, 40)
            await wait_for_job(store, 1, lambda job: job.steps == 9)
            during = await scrape(url)
            assert value(during, "pseudo_dalle_queue_jobs", state="queued") == 1
            assert value(during, "pseudo_dalle_queue_jobs", state="running") == 1
            assert workers(during) == {"idle": 0, "busy": 1, "gone": 0}
            job_2 = store.job(2)
            assert job_2 is not None
            age = value(during, "pseudo_dalle_queue_oldest_age_seconds")
            assert 0 < age <= time.time() - job_2.created_at
            assert value(during, "pseudo_dalle_job_wait_seconds_count") == 1
            assert value(during, "pseudo_dalle_iterations_total") == 9

            await fake.reply_to(await fake.command(ALICE, "cancel", job=1))
            await puppets.was_cancelled(1)
            puppets.finish(1, 9, cancelled=True)
            await puppets.next_job(2)
            puppets.progress(2, 20, 20)
            puppets.finish(2, 20, seconds=3.5)
            done = await wait_for_job(store, 2, lambda job: job.status == "done")
            cancelled = store.job(1)
            assert cancelled is not None
            assert cancelled.status == "cancelled"
            after = await scrape(url)
            assert value(after, "pseudo_dalle_queue_jobs", state="queued") == 0
            assert value(after, "pseudo_dalle_queue_jobs", state="running") == 0
            assert value(after, "pseudo_dalle_queue_oldest_age_seconds") == 0
            assert outcomes(after) == {"succeeded": 1, "failed": 0, "cancelled": 1, "requeued": 0}
            assert value(after, "pseudo_dalle_job_wait_seconds_count") == 2
            run_labels = {"size": "64", "quality": done.spec.quality}
            assert value(after, "pseudo_dalle_job_run_seconds_count", **run_labels) == 1
            assert done.seconds == 3.5
            assert value(after, "pseudo_dalle_job_run_seconds_sum", **run_labels) == pytest.approx(
                done.seconds
            )
            assert value(after, "pseudo_dalle_iterations_total") == cancelled.steps + done.steps
            assert cancelled.steps + done.steps == 29
            assert value(after, "pseudo_dalle_commands_total", command="draw") == 2
            assert value(after, "pseudo_dalle_commands_total", command="cancel") == 1
            assert value(after, "discord_connected") == 1
            with_latency = await poll(
                url, lambda m: sample(m, "discord_gateway_latency_seconds") is not None
            )
            assert 0 <= value(with_latency, "discord_gateway_latency_seconds") < 5
            labels = [s.labels for family in after.values() for s in family.samples]
            assert not any(set(label) & {"user", "member", "guild", "prompt"} for label in labels)

    run(scenario())


@pytest.mark.e2e
def test_a_worker_gone_is_counted_until_replaced_and_its_job_requeued_then_failed(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    (port,) = free_ports(1)
    url = f"http://127.0.0.1:{port}/metrics"

    async def scenario() -> None:
        async with bot_with_puppets(
            tmp_path, model_files, worker="cutouts = 4\nmax_requeues = 1", metrics=metrics_at(port)
        ) as (fake, running, config, puppets):
            store = running.store
            held = (config.models.clip,)
            puppets.join(clip_models=held)
            await fake.reply_to(
                await fake.command(ALICE, "draw", prompt="doomed", iterations=40, size=64)
            )
            await puppets.next_job(1)
            puppets.progress(1, 5, 40)
            await wait_for_job(store, 1, lambda job: job.steps == 5)
            del puppets.dispatched[1]  # so that it can be seen sent again

            puppets.leave()
            await wait_for_job(store, 1, lambda job: job.status == "queued")
            gone = await scrape(url)
            assert workers(gone) == {"idle": 0, "busy": 0, "gone": 1}
            assert outcomes(gone)["requeued"] == 1
            assert value(gone, "pseudo_dalle_queue_jobs", state="queued") == 1
            assert value(gone, "pseudo_dalle_queue_jobs", state="running") == 0
            assert value(gone, "pseudo_dalle_job_wait_seconds_count") == 1

            puppets.join(clip_models=held)  # back under its name, as the local worker restarts
            await puppets.next_job(1)
            back = await poll(url, lambda m: workers(m)["busy"] == 1)
            assert workers(back) == {"idle": 0, "busy": 1, "gone": 0}
            assert outcomes(back)["requeued"] == 1
            assert value(back, "pseudo_dalle_job_wait_seconds_count") == 2  # it waited again
            puppets.progress(1, 3, 40)  # drawn again from the start
            await wait_for_job(store, 1, lambda job: job.steps == 3)

            puppets.leave()
            await wait_for_job(store, 1, lambda job: job.status == "failed")
            ended = await scrape(url)
            assert outcomes(ended) == {"succeeded": 0, "failed": 1, "cancelled": 0, "requeued": 1}
            assert value(ended, "pseudo_dalle_queue_jobs", state="running") == 0
            assert value(ended, "pseudo_dalle_iterations_total") == 5 + 3
            assert workers(ended) == {"idle": 0, "busy": 0, "gone": 1}
            puppets.join("gpu-b", clip_models=held)  # another in its place, as through Redis
            replaced = await poll(url, lambda m: workers(m)["idle"] == 1)
            assert workers(replaced) == {"idle": 1, "busy": 0, "gone": 0}

    run(scenario())


@pytest.mark.e2e
def test_a_job_handed_over_through_a_shared_queue_is_requeued_once_and_waited_for_once(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    """As through Redis: the job waits in the shared queue until a worker takes it; when that
    worker is gone the next one takes it over, and a new worker under another name replaces the
    one gone."""
    (port,) = free_ports(1)
    url = f"http://127.0.0.1:{port}/metrics"

    async def scenario() -> None:
        puppets = FakeWorkers(keeps_jobs=True)
        async with running_bot(
            tmp_path, model_files, transport=puppets, metrics=metrics_at(port)
        ) as (fake, running, config):
            store = running.store
            held = (config.models.clip,)
            puppets.join("gpu-a", clip_models=held)
            await fake.reply_to(
                await fake.command(ALICE, "draw", prompt="far", iterations=40, size=64)
            )
            await puppets.next_job(1)
            assert puppets.dispatched[1].worker is None
            shared = await scrape(url)
            assert value(shared, "pseudo_dalle_queue_jobs", state="running") == 1
            assert workers(shared) == {"idle": 1, "busy": 0, "gone": 0}
            puppets.take(1, "gpu-a")
            puppets.progress(1, 6, 40, worker_id="gpu-a")
            await wait_for_job(store, 1, lambda job: job.steps == 6)
            taken = await scrape(url)
            assert workers(taken) == {"idle": 0, "busy": 1, "gone": 0}
            assert value(taken, "pseudo_dalle_job_wait_seconds_count") == 1

            puppets.leave("gpu-a")
            gone = await poll(url, lambda m: outcomes(m)["requeued"] == 1)
            assert workers(gone) == {"idle": 0, "busy": 0, "gone": 1}
            assert value(gone, "pseudo_dalle_queue_jobs", state="running") == 1
            puppets.join("gpu-b", clip_models=held)
            puppets.take(1, "gpu-b", attempt=2)
            await wait_for_job(store, 1, lambda job: job.worker == "gpu-b")
            back = await poll(url, lambda m: workers(m)["busy"] == 1)
            assert workers(back) == {"idle": 0, "busy": 1, "gone": 0}
            assert outcomes(back)["requeued"] == 1
            puppets.progress(1, 2, 40, worker_id="gpu-b")  # drawn again from the start
            puppets.finish(1, 40, worker_id="gpu-b")
            await wait_for_job(store, 1, lambda job: job.status == "done")
            ended = await scrape(url)
            assert outcomes(ended) == {"succeeded": 1, "failed": 0, "cancelled": 0, "requeued": 1}
            assert value(ended, "pseudo_dalle_job_wait_seconds_count") == 1
            assert value(ended, "pseudo_dalle_iterations_total") == 6 + 40

    run(scenario())


# -- the workers' own figures, from real workers -----------------------------------------------
@pytest.mark.e2e
@pytest.mark.slow
def test_the_local_worker_serves_its_own_metrics_and_again_once_restarted(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    bot_port, worker_port = free_ports(2)
    worker = (
        f'cutouts = 4\nthreads = 1\nrestart_delay_s = 0.2\nmetrics_bind = "127.0.0.1:{worker_port}"'
    )
    bot_url = f"http://127.0.0.1:{bot_port}/metrics"
    worker_url = f"http://127.0.0.1:{worker_port}/metrics"

    async def scenario() -> None:
        async with running_bot(
            tmp_path,
            model_files,
            worker=worker,
            metrics=metrics_at(bot_port),
            limits=ENDLESS_LIMITS,
            defaults=ENDLESS_DEFAULTS,
        ) as (fake, running, _):
            store = running.store
            first = await running.worker_pid()
            assert listening(first) == {("tcp", worker_port)}
            await fake.reply_to(
                await fake.command(ALICE, "draw", prompt="long", iterations=100000, size=64)
            )
            await wait_for_job(store, 1, lambda job: job.steps > 0)
            # The worker tells its figures at progress reports: a step time after two of them.
            drawing = await poll(worker_url, lambda m: value(m, f"{STEP_SECONDS}_count") >= 1)
            assert value(drawing, JOBS_IN_BATCH) == 1
            assert value(drawing, "pseudo_dalle_worker_iterations_per_second") > 0
            assert 0 < value(drawing, f"{STEP_SECONDS}_sum") < 60
            # No GPU here: every GPU figure is absent, not zero.
            assert [name for name in scraped_names(drawing) if name in GPU_METRICS] == []
            started = value(drawing, "process_start_time_seconds")

            os.kill(first, signal.SIGKILL)
            await poll(bot_url, lambda m: workers(m)["gone"] == 1)
            back = await poll(bot_url, lambda m: workers(m)["busy"] == 1, timeout=120)
            assert workers(back) == {"idle": 0, "busy": 1, "gone": 0}
            assert outcomes(back)["requeued"] == 1
            # The new worker process serves its figures on the same address.
            restarted = await poll(worker_url, lambda m: value(m, JOBS_IN_BATCH) == 1)
            assert value(restarted, "process_start_time_seconds") > started
            second = await running.worker_pid()
            assert second != first
            assert listening(second) == {("tcp", worker_port)}

            await fake.reply_to(await fake.command(ALICE, "cancel", job=1))
            await wait_for_job(store, 1, lambda job: job.status == "cancelled")
            idle = await poll(worker_url, lambda m: value(m, JOBS_IN_BATCH) == 0)
            assert value(idle, "pseudo_dalle_worker_iterations_per_second") == 0
            shown = await poll(
                bot_url, lambda m: sample(m, "discord_gateway_latency_seconds") is not None
            )
            missing = dashboard_metrics() - set(GPU_METRICS) - scraped_names(shown, idle)
            assert missing == set()

    run(scenario())


@pytest.mark.redis
@pytest.mark.e2e
@pytest.mark.slow
def test_a_redis_worker_serves_its_own_metrics_and_is_gone_until_replaced(
    model_files: ModelFiles,
    tmp_path: Path,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bot_port, port_a, port_b = free_ports(3)
    bot_url = f"http://127.0.0.1:{bot_port}/metrics"

    def worker(name: str, port: int) -> WorkerProcess:
        monkeypatch.setenv(METRICS_BIND_ENV, f"127.0.0.1:{port}")
        return WorkerProcess(redis_server.url, name, tmp_path / f"{name}.log")

    async def scenario() -> None:
        async with running_bot(
            tmp_path,
            model_files,
            redis=f'url = "{redis_server.url}"',
            metrics=metrics_at(bot_port),
            limits=ENDLESS_LIMITS,
            defaults=ENDLESS_DEFAULTS,
        ) as (fake, running, _):
            store = running.store
            started: list[WorkerProcess] = [worker("gpu-a", port_a)]
            try:
                await poll(bot_url, lambda m: workers(m)["idle"] == 1, timeout=120)
                await fake.reply_to(
                    await fake.command(ALICE, "draw", prompt="far", iterations=100000, size=64)
                )
                drawing = await poll(
                    f"http://127.0.0.1:{port_a}/metrics",
                    lambda m: value(m, f"{STEP_SECONDS}_count") >= 1,
                )
                assert value(drawing, JOBS_IN_BATCH) == 1
                assert value(drawing, "pseudo_dalle_worker_iterations_per_second") > 0
                busy = await scrape(bot_url)
                assert workers(busy) == {"idle": 0, "busy": 1, "gone": 0}
                assert value(busy, "pseudo_dalle_queue_jobs", state="running") == 1

                started[0].kill()
                gone = await poll(bot_url, lambda m: workers(m)["gone"] == 1, timeout=60)
                assert workers(gone)["busy"] + workers(gone)["idle"] == 0
                assert outcomes(gone)["requeued"] == 1  # handed to the next worker
                started.append(worker("gpu-b", port_b))
                taken = await poll(
                    f"http://127.0.0.1:{port_b}/metrics",
                    lambda m: value(m, JOBS_IN_BATCH) == 1,
                    timeout=120,
                )
                assert value(taken, JOBS_IN_BATCH) == 1
                back = await poll(bot_url, lambda m: workers(m)["busy"] == 1)
                assert workers(back) == {"idle": 0, "busy": 1, "gone": 0}

                await fake.reply_to(await fake.command(ALICE, "cancel", job=1))
                await wait_for_job(store, 1, lambda job: job.status == "cancelled")
                ended = await scrape(bot_url)
                assert outcomes(ended)["cancelled"] == 1
                assert value(ended, "pseudo_dalle_job_wait_seconds_count") == 1
            finally:
                for process in started:
                    process.kill()

    run(scenario())


@pytest.mark.e2e
def test_refused_prompts_are_counted_by_whose_rule_and_withheld_pictures_by_kind(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    (port,) = free_ports(1)

    async def scenario() -> None:
        async with bot_with_puppets(
            tmp_path,
            model_files,
            joined_places=1,
            metrics=metrics_at(port),
            moderation='blocked_terms = ["kraken"]',
        ) as (fake, running, _, workers):
            assert "kraken" in await fake.reply_to(
                await fake.command(ALICE, "draw", prompt="a kraken")
            )
            blocked = await fake.command(ADMIN, "moderation", subcommand="block", term="squid")
            await fake.reply_to(blocked)
            for prompt in ("a squid", "the S.Q.U.I.D"):
                await fake.reply_to(await fake.command(ALICE, "draw", prompt=prompt))
            await fake.reply_to(await fake.command(ALICE, "draw", prompt="a boat"))
            await workers.next_job(1)
            crossing = workers.scores(1, crossing=1.0)
            workers.progress(1, 5, 20, screening=crossing)
            workers.progress(1, 10, 20, screening=crossing)
            workers.finish(1, 20, screening=crossing)
            await wait_for_job(running.store, 1, lambda job: job.status == "done")
            await fake.reply_to(await fake.command(ALICE, "draw", prompt="a boat"))
            await workers.next_job(2)
            workers.fail(2, PROMPT_MEANING.code, {"concept": "gore"})
            await wait_for_job(running.store, 2, lambda job: job.status == "failed")
            counted = await scrape(f"http://127.0.0.1:{port}/metrics")
            refused = {
                source: value(counted, "pseudo_dalle_prompts_rejected_total", source=source)
                for source in ("operator", "server", "automod", "meaning")
            }
            assert refused == {"operator": 1, "server": 2, "automod": 0, "meaning": 1}
            withheld = {
                picture: value(counted, "pseudo_dalle_pictures_withheld_total", picture=picture)
                for picture in ("preview", "final", "timelapse")
            }
            assert withheld == {"preview": 2, "final": 1, "timelapse": 0}

    run(scenario())
