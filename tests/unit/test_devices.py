"""``--devices`` parsing, device facts (NVML faked, /proc real), restart backoff and the
per-worker device gauges of /metrics."""

from __future__ import annotations

import sys
import types
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from api.metrics import device_gauges
from tuner.db.workers import WorkerState
from workers import devices
from workers.devices import DeviceProbe, DeviceSlot, parse_devices
from workers.supervisor import RestartPolicy, describe_exit


@pytest.fixture(autouse=True)
def _no_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_cpu_copies_get_numbered_labels_and_see_no_gpu() -> None:
    assert parse_devices("cpu*2", cuda_count=4) == [
        DeviceSlot("cpu", "cpu0", ""), DeviceSlot("cpu", "cpu1", "")
    ]
    assert parse_devices("cpu", cuda_count=0) == [DeviceSlot("cpu", "cpu0", "")]
    assert parse_devices("cpu*2")[0].environment()["CUDA_VISIBLE_DEVICES"] == ""


def test_named_gpus_are_pinned_each_to_its_own() -> None:
    slots = parse_devices("cuda:0, CUDA:2", cuda_count=4)
    assert slots == [DeviceSlot("cuda:0", "cuda0", "0"), DeviceSlot("cuda:0", "cuda2", "2")]
    env = slots[1].environment()
    assert env == {"CUDA_VISIBLE_DEVICES": "2", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


def test_all_is_every_gpu_or_one_cpu() -> None:
    assert [s.label for s in parse_devices("all", cuda_count=3)] == ["cuda0", "cuda1", "cuda2"]
    assert parse_devices("all", cuda_count=0) == [DeviceSlot("cpu", "cpu0", "")]


def test_gpu_indices_go_through_the_parents_visible_devices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under CUDA_VISIBLE_DEVICES=3,GPU-abc, cuda:1 is GPU-abc, and `all` is those two."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,GPU-abc")
    assert devices.cuda_device_count() == 2
    assert [s.visible for s in parse_devices("all")] == ["3", "GPU-abc"]
    assert parse_devices("cuda:1") == [DeviceSlot("cuda:0", "cuda1", "GPU-abc")]


@pytest.mark.parametrize(
    ("spec", "count", "message"),
    [
        ("gpu", 1, "cannot read 'gpu'; pass all"),
        ("", 1, "--devices is empty"),
        ("cpu*0", 1, "asks for no worker; use cpu*1"),
        ("cpu*", 1, "cannot read 'cpu*'"),
        ("cuda:2", 2, "has 2 CUDA device(s); use cuda:0 to cuda:1"),
        ("cuda:0", 0, "has no CUDA device; use --devices cpu"),
        ("cuda:1,cuda:1", 2, "cuda:1 is named twice"),
    ],
)
def test_bad_specs_say_what_to_pass(spec: str, count: int, message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_devices(spec, cuda_count=count)
    assert message in str(err.value)


def test_cpu_facts_come_from_proc_and_the_process(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\n")
    assert devices.cpu_name(cpuinfo) == "Test CPU 9000"
    assert devices.cpu_name(tmp_path / "missing") == "cpu"
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmRSS:\t  2048 kB\n")
    assert devices.process_rss_bytes(status) == 2 * 1024 * 1024

    probe = DeviceProbe("cpu")
    first = probe.read()
    assert first["kind"] == "cpu" and first["name"]
    assert first["memory_used_bytes"] > 0
    assert first["memory_total_bytes"] >= first["memory_used_bytes"]
    assert first["utilisation_percent"] is None  # no earlier reading to compare with
    sum(i * i for i in range(200_000))  # some CPU time between the readings
    second = probe.read()
    assert 0.0 <= second["utilisation_percent"] <= 100.0


def _fake_nvml(fail_init: bool = False) -> types.ModuleType:
    """A ``pynvml`` stand-in with two GPUs, whose handles are what it was looked up by."""

    class NVMLError(Exception):
        pass

    def init() -> None:
        if fail_init:
            raise NVMLError("NVML Shared Library Not Found")

    def utilisation(handle: Any) -> Any:
        if handle == ("uuid", "MIG-1"):
            raise NVMLError("Not Supported")
        return types.SimpleNamespace(gpu=87)

    fake = types.ModuleType("pynvml")
    fake.NVMLError = NVMLError  # type: ignore[attr-defined]
    fake.nvmlInit = init  # type: ignore[attr-defined]
    fake.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    fake.nvmlDeviceGetCount = lambda: 2  # type: ignore[attr-defined]
    fake.nvmlDeviceGetHandleByIndex = lambda i: ("index", i)  # type: ignore[attr-defined]
    fake.nvmlDeviceGetHandleByUUID = lambda u: ("uuid", u)  # type: ignore[attr-defined]
    fake.nvmlDeviceGetName = lambda h: b"NVIDIA Fake 80GB"  # type: ignore[attr-defined]
    fake.nvmlDeviceGetUUID = lambda h: f"GPU-{h[1]}"  # type: ignore[attr-defined]
    fake.nvmlDeviceGetIndex = lambda h: h[1] if h[0] == "index" else 7  # type: ignore[attr-defined]
    fake.nvmlDeviceGetMemoryInfo = (  # type: ignore[attr-defined]
        lambda h: types.SimpleNamespace(total=80 * 2**30, used=3 * 2**30)
    )
    fake.nvmlDeviceGetUtilizationRates = utilisation  # type: ignore[attr-defined]
    return fake


def test_cuda_facts_come_from_nvml_for_the_pinned_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker pinned to GPU 2 sees it as cuda:0; NVML is asked about GPU 2."""
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    facts = DeviceProbe("cuda:0").read()
    assert facts == {
        "kind": "cuda", "name": "NVIDIA Fake 80GB", "uuid": "GPU-2", "index": 2,
        "memory_total_bytes": 80 * 2**30, "memory_used_bytes": 3 * 2**30,
        "utilisation_percent": 87.0,
    }
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert devices.cuda_device_count() == 2


def test_nvml_facts_it_cannot_read_are_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-1")
    facts = DeviceProbe("cuda:0").read()
    assert facts["name"] == "NVIDIA Fake 80GB" and facts["index"] == 7
    assert facts["utilisation_percent"] is None  # not supported on a MIG slice


def test_without_a_driver_cuda_facts_are_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml(fail_init=True))
    facts = DeviceProbe("cuda:0").read()
    assert facts == {"kind": "cuda", "name": None, "memory_total_bytes": None,
                     "memory_used_bytes": None, "utilisation_percent": None}
    assert devices._nvml_device_count() is None


def test_without_pynvml_installed_cuda_facts_are_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    assert DeviceProbe("cuda:1").read()["name"] is None


def test_restart_backoff_doubles_up_to_its_cap() -> None:
    policy = RestartPolicy(first_delay=1.0, max_delay=5.0)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(3) == "exit code 3"


def _state(worker_id: str, device_info: dict[str, Any] | None) -> WorkerState:
    now = datetime.now(UTC)
    return WorkerState(id=worker_id, hostname="node", pid=1, device="cuda:0", workloads=[],
                       status="running", current_job_id=None, started_at=now,
                       last_heartbeat=now, alive=True, device_info=device_info)


def test_device_gauges_are_per_worker() -> None:
    facts = {"kind": "cuda", "name": "H100", "memory_total_bytes": 100,
             "memory_used_bytes": 40, "utilisation_percent": 55.0}
    metrics = {m.name: m for m in device_gauges([_state("n-cuda1", facts), _state("old", None)])}
    used = metrics["adamtune_worker_device_memory_used_bytes"].samples
    assert [(s.labels, s.value) for s in used] == [({"worker": "n-cuda1", "device": "cuda:0"}, 40)]
    util = metrics["adamtune_worker_device_utilisation_percent"].samples
    assert [s.value for s in util] == [55.0]
    info = metrics["adamtune_worker_device_info"].samples
    assert [s.labels["name"] for s in info] == ["H100", ""]
