"""A worker's Prometheus metrics, served at /metrics when an address is given
(`--metrics-bind`); without one nothing listens and nothing is counted.

Speed and batch figures change where the core already stops to report, at a progress report
and when a job leaves the batch, never at every step: on a GPU, timing a step would mean
waiting for its queued work. GPU figures are read when Prometheus asks, in another thread:
CUDA's allocator counters from torch, and utilisation, memory, temperature and power from NVML
(`nvidia-ml-py`, imported as `pynvml`). A worker that draws on no GPU publishes none of them
(absent, not zero), so a dashboard never takes a CPU for an idle GPU.

Each worker has its own registry and server (no multiprocess mode, no global state), so one
process may hold several, as the benchmark does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

import pynvml
import torch
from prometheus_client import (
    CollectorRegistry,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from generator.contract.metrics import parse_bind

log = logging.getLogger("pseudo_dalle.worker")

ITERATIONS_PER_SECOND = "pseudo_dalle_worker_iterations_per_second"
JOBS_IN_BATCH = "pseudo_dalle_worker_jobs_in_batch"
STEP_SECONDS = "pseudo_dalle_worker_step_seconds"
CUDA_ALLOCATED = "pseudo_dalle_worker_cuda_memory_allocated_bytes"
CUDA_PEAK = "pseudo_dalle_worker_cuda_memory_peak_bytes"
GPU_UTILIZATION = "pseudo_dalle_gpu_utilization_ratio"
GPU_MEMORY_USED = "pseudo_dalle_gpu_memory_used_bytes"
GPU_MEMORY_TOTAL = "pseudo_dalle_gpu_memory_total_bytes"
GPU_TEMPERATURE = "pseudo_dalle_gpu_temperature_celsius"
GPU_POWER = "pseudo_dalle_gpu_power_watts"
# Published only by a worker on a GPU.
GPU_METRICS = (
    CUDA_ALLOCATED,
    CUDA_PEAK,
    GPU_UTILIZATION,
    GPU_MEMORY_USED,
    GPU_MEMORY_TOTAL,
    GPU_TEMPERATURE,
    GPU_POWER,
)
# A tiny model on a CPU steps in milliseconds, a 512x512 picture on a slow one in seconds.
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class WorkerMetrics:
    """The figures of one worker, in a registry of its own; the core tells it of each progress
    report and of each job that leaves the batch."""

    def __init__(self, device: torch.device) -> None:
        self.registry = CollectorRegistry()
        self.rate = Gauge(
            ITERATIONS_PER_SECOND,
            "Iterations per second of all the jobs in the batch, as of "
            "their latest progress reports",
            registry=self.registry,
        )
        self.jobs = Gauge(JOBS_IN_BATCH, "Jobs drawn together in each step", registry=self.registry)
        self.step = Histogram(
            STEP_SECONDS,
            "Seconds a step of the batch takes, averaged between two progress reports of a job",
            buckets=STEP_BUCKETS,
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        if device.type == "cuda":
            self.registry.register(GpuCollector(device))
        self._rates: dict[int, float] = {}  # by batch handle
        self._marks: dict[int, tuple[int, float]] = {}  # step and time of the last report

    def reported(self, job: int, step: int, rate: float, batch: Collection[int]) -> None:
        """Job `job` (a batch handle) reported `step` at `rate` it/s; `batch` is every job
        in the batch now."""
        now = time.monotonic()
        mark = self._marks.get(job)
        if mark is not None and step > mark[0]:
            self.step.observe((now - mark[1]) / (step - mark[0]))
        self._marks[job] = (step, now)
        self._rates[job] = rate
        self.ended(batch)

    def serve(self, bind: str) -> MetricsServer | None:
        """Serve the figures at http://`bind`/metrics; None (logged) when the address cannot
        be listened on: the worker draws on without them."""
        return _serve(bind, self.registry)

    def ended(self, batch: Collection[int]) -> None:
        """Jobs left the batch: only those in `batch` still draw."""
        for gone in self._rates.keys() - set(batch):
            del self._rates[gone]
            self._marks.pop(gone, None)
        self.rate.set(sum(self._rates.values()))
        self.jobs.set(len(batch))


class GpuCollector(Collector):
    """The worker's GPU, read when Prometheus asks: CUDA's allocator through torch, the rest
    through NVML. A figure NVML cannot give (a MIG slice has no temperature of its own) is
    left out."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.label = str(device)
        self._nvml: object | None = None
        try:
            pynvml.nvmlInit()
            self._nvml = _nvml_handle(str(torch.cuda.get_device_properties(device).uuid))
        except pynvml.NVMLError as error:
            log.warning(
                "NVML cannot read %s (%s): only its CUDA memory is published", device, error
            )

    def collect(self) -> Iterator[Metric]:
        yield self._gauge(
            CUDA_ALLOCATED,
            "Bytes of GPU memory torch's tensors take now",
            torch.cuda.memory_allocated(self.device),
        )
        yield self._gauge(
            CUDA_PEAK,
            "Most bytes of GPU memory torch's tensors took since the worker started",
            torch.cuda.max_memory_allocated(self.device),
        )
        if self._nvml is not None:
            yield from self._nvml_figures(self._nvml)

    def _nvml_figures(self, handle: object) -> Iterator[Metric]:
        readings = (
            (
                GPU_UTILIZATION,
                "Share of the last sample period the GPU was busy, 0 to 1",
                lambda: pynvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100,
            ),
            (
                GPU_MEMORY_USED,
                "Bytes of GPU memory in use, by every process",
                lambda: pynvml.nvmlDeviceGetMemoryInfo(handle).used,
            ),
            (
                GPU_MEMORY_TOTAL,
                "Bytes of GPU memory in all",
                lambda: pynvml.nvmlDeviceGetMemoryInfo(handle).total,
            ),
            (
                GPU_TEMPERATURE,
                "The GPU's temperature in degrees Celsius",
                lambda: pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU),
            ),
            (
                GPU_POWER,
                "Power the GPU draws, in watts",
                lambda: pynvml.nvmlDeviceGetPowerUsage(handle) / 1000,
            ),
        )
        for name, documentation, read in readings:
            try:
                value = float(read())
            except pynvml.NVMLError:
                continue
            yield self._gauge(name, documentation, value)

    def _gauge(self, name: str, documentation: str, value: float) -> GaugeMetricFamily:
        gauge = GaugeMetricFamily(name, documentation, labels=["device"])
        gauge.add_metric([self.label], value)
        return gauge


def _nvml_handle(uuid: str) -> object:
    """NVML's handle of the device CUDA knows by `uuid`, whatever CUDA_VISIBLE_DEVICES
    renumbered: a whole GPU (NVML names it GPU-uuid) or a MIG slice (MIG-uuid)."""
    try:
        return pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
    except pynvml.NVMLError_NotFound:
        return pynvml.nvmlDeviceGetHandleByUUID(f"MIG-{uuid}")


@dataclass
class MetricsServer:
    """/metrics served from a thread; `close` stops it and frees the port."""

    server: WSGIServer
    thread: threading.Thread

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def _serve(bind: str, registry: CollectorRegistry) -> MetricsServer | None:
    try:
        host, port = parse_bind(bind)
        server, thread = start_http_server(port, host, registry)
    except (ValueError, OSError) as error:
        log.error("not serving metrics at %s: %s", bind, error)
        return None
    log.info("serving metrics at http://%s/metrics", bind)
    return MetricsServer(server, thread)
