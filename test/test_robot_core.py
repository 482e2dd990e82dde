"""The ROS-free parts behind issue 12: the parameter table, the input monitor, carried results."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from node_helpers import REPO

from picosam3_ros.core.carry import LastResults
from picosam3_ros.core.crop import CropRect
from picosam3_ros.core.input_monitor import OK, WARN, InputMonitor, choose_image_reliability
from picosam3_ros.core.pipeline import PromptResult, Status
from picosam3_ros.nodes.node_config import ConfigError, Param, ParamTable
from picosam3_ros.nodes.sensor_params import SENSOR_PARAMS, validate

MS = 1_000_000


def test_param_table_checks_types_ranges_choices_and_rules():
    table = ParamTable(
        [Param("rate", 1.0, "Hz", (0.5, 10.0), True), Param("mode", "a", "mode", ("a", "b")),
         Param("count", 3, "n", (0, 5), True), Param("on", False, "flag")],
        lambda v: "count must be 0 when mode is b" if v["mode"] == "b" and v["count"] else None,
    )
    assert table.validate({}) == {"rate": 1.0, "mode": "a", "count": 3, "on": False}
    assert table.problem("rate", 2) is None  # an int is a fine double
    assert "finite" in table.problem("rate", float("nan"))
    assert "range" in table.problem("rate", 11.0)
    assert "allowed: a, b" in table.problem("mode", "c")
    assert "integer" in table.problem("count", 2.5) and "integer" in table.problem("count", True)
    assert "true or false" in table.problem("on", 1)
    assert table.runtime_names() == ["rate", "count"]
    with pytest.raises(ConfigError, match="when mode is b"):
        table.validate({"mode": "b"})


def test_whole_numbers_are_taken_for_doubles_and_text():
    """ROS 2 types `0`, `-1` and `1000` as integers: a double parameter takes them as doubles."""
    table = ParamTable([Param("rate", 1.0, "Hz", (0.0, 10.0)), Param("ids", "", "text"),
                        Param("count", 3, "n"), Param("on", False, "flag")])
    assert table.coerce("rate", 0) == 0.0 and isinstance(table.coerce("rate", 0), float)
    assert table.coerce("ids", 0) == "0"
    assert table.coerce("count", 2.0) == 2.0 and table.coerce("on", 1) == 1  # no guessing elsewhere
    assert table.coerce("rate", True) is True and "finite number" in table.problem("rate", True)
    assert table.validate({"rate": 2, "ids": 7}) == {"rate": 2.0, "ids": "7", "count": 3, "on": False}
    config = validate({"prompt_timeout": 0, "box_margin": 1000, "threshold": 0})
    assert (config.prompt_timeout, config.box_margin, config.threshold) == (0.0, 1000.0, 0.0)
    assert all(isinstance(v, float) for v in (config.prompt_timeout, config.box_margin, config.threshold))


def test_sensor_config_validation():
    config = validate({"threshold": 0.7, "max_prompts": 5, "image_transport": "compressed"})
    assert (config.threshold, config.max_prompts, config.image_transport) == (0.7, 5, "compressed")
    assert config.values()["threshold"] == 0.7
    for bad in ({"threshold": 1.0}, {"image_qos": "fast"}, {"backend": "imx500", "camera": "none"}):
        with pytest.raises(ConfigError):
            validate(bad)


def test_every_sensor_parameter_is_in_the_parameters_page():
    page = (REPO / "docs" / "parameters.md").read_text()
    section = page.split("## Sensor node parameters", 1)[1].split("\n## ", 1)[0]
    for name in SENSOR_PARAMS.params:
        documented = f"`{name}`" in section or (name.startswith("emulator.") and "`emulator.*`" in section)
        assert documented, name
    yaml = (REPO / "config" / "sensor.yaml").read_text()
    for name in SENSOR_PARAMS.params:
        assert f"{name.split('.')[-1]}:" in yaml, name


def test_defaults_are_written_once_the_yaml_and_the_launch_file_agree_with_the_table():
    """config/sensor.yaml sets every parameter to the table's default; NodeConfig has no defaults
    of its own (a config comes from the table); the launch file's descriptions name the table's."""
    import dataclasses

    import yaml as pyyaml

    from picosam3_ros.nodes.sensor_params import NodeConfig

    block = pyyaml.safe_load((REPO / "config" / "sensor.yaml").read_text())["/**/picosam3_sensor"]
    values = dict(block["ros__parameters"])
    values.update({f"emulator.{k}": v for k, v in values.pop("emulator").items()})
    assert values == SENSOR_PARAMS.defaults()
    fields = {f.name: f for f in dataclasses.fields(NodeConfig)}
    assert set(fields) == {n for n in SENSOR_PARAMS.params if not n.startswith("emulator.")} | {"emulator"}
    assert all(f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
               for f in fields.values())
    namespace: dict = {}
    sys.path.insert(0, str(REPO / "test" / "launch_standins"))
    try:
        source = (REPO / "launch" / "sensor.launch.py").read_text()
        exec(compile(source, "sensor.launch.py", "exec"), namespace)
    finally:
        sys.path.remove(str(REPO / "test" / "launch_standins"))
    for name in namespace["OVERRIDES"]:
        default, description = namespace["ARGUMENTS"][name]
        assert default == "", name  # '' = the config file's value stands
        written = SENSOR_PARAMS.params[name].default
        if name != "model":
            shown = str(written).lower() if isinstance(written, bool) else written
            assert f"the config file's: {shown}" in description, (name, description)


def test_input_monitor_reports_lost_frames_and_silence():
    monitor = InputMonitor("/image", "export THE_FIX", window_s=3.0)
    t0 = 10_000 * MS
    assert monitor.assess(t0, 0, 0.5).level == OK  # nobody publishes: waiting, not an error
    assert monitor.assess(t0 + 1000 * MS, 1, 0.5).level == OK  # a publisher, give it a moment
    silent = monitor.assess(t0 + 3500 * MS, 1, 0.5)
    assert silent.level == WARN and "THE_FIX" in silent.message and "no frame" in silent.message
    # 30 fps published, every 10th frame arrives: the writer's sequence numbers tell.
    t = t0 + 4000 * MS
    for i in range(90):
        if i % 10 == 0:
            monitor.frame(t + i * 33 * MS, "writer-a", 1000 + i)
    health = monitor.assess(t + 90 * 33 * MS, 1, 0.5)
    assert health.level == WARN and "THE_FIX" in health.message
    assert health.delivered_fraction == pytest.approx(9 / 81)
    assert health.published_hz == pytest.approx(30.3, rel=0.05)
    # Every frame: fine. Lost-sample events alone also tell.
    ok = InputMonitor("/image", "fix")
    for i in range(60):
        ok.frame(i * 33 * MS, "w", i + 1)
    assert ok.assess(60 * 33 * MS, 1, 0.5).level == OK
    lossy = InputMonitor("/image", "fix")
    for i in range(10):
        lossy.frame(i * 300 * MS)  # no sequence numbers (another RMW)
        lossy.lost(i * 300 * MS, 9)
    assert lossy.assess(3000 * MS, 1, 0.5).level == WARN
    # Nothing to count with: no claim.
    unknown = InputMonitor("/image", "fix")
    for i in range(10):
        unknown.frame(i * 300 * MS)
    assert unknown.assess(3000 * MS, 1, 0.5).delivered_fraction == 1.0


def test_input_monitor_needs_no_honest_stamps_or_timing():
    """The soak that logged 44 false WARNs: 30 fps for 10 minutes, 4 frames lost, arrivals that
    jitter by +-8 ms and come in bursts. Two writers (a driver restart) and the frames a second
    subscription delivers again count once."""
    rng = np.random.default_rng(21)
    monitor = InputMonitor("/image", "fix")
    lost = set(rng.choice(18_000, 4, replace=False).tolist())
    arrival = 0
    warned = 0
    for i in range(18_000):
        arrival = max(arrival + 1, int(i * 33.3 * MS + rng.uniform(-8, 8) * MS))
        if i not in lost:
            writer = "a" if i < 9_000 else "b"
            monitor.frame(arrival, writer, i - (0 if writer == "a" else 9_000) + 1)
            if i % 50 == 0:
                monitor.frame(arrival, writer, i - (0 if writer == "a" else 9_000) + 1)  # again
        if i % 30 == 0:
            health = monitor.assess(arrival, 1, 0.5)
            warned += health.level == WARN
            assert health.delivered_fraction > 0.95
    assert warned == 0


def test_image_reliability_follows_the_publishers():
    assert choose_image_reliability([]) == "best_effort"
    assert choose_image_reliability(["reliable"]) == "reliable"
    assert choose_image_reliability(["reliable", "best_effort"]) == "best_effort"


def test_last_results_carry_the_last_mask_with_its_own_header():
    last: LastResults[str] = LastResults()
    mask = np.full((4, 4), 255, np.uint8)
    ok = PromptResult(1, Status.OK, crop=CropRect(0, 0, 4, 4), crop_mask=mask, score=0.9)
    first = last.carry([ok, PromptResult(2, Status.NOT_SERVED)], "frame-1")
    assert [(r.status, h) for r, h in first] == [(Status.OK, "frame-1"), (Status.NOT_SERVED, "frame-1")]
    assert first[1][0].crop_mask is None  # nothing to carry yet
    second = last.carry([PromptResult(1, Status.NOT_SERVED), PromptResult(2, Status.BACKEND_ERROR)],
                        "frame-2")
    carried, header = second[0]
    assert carried.status == Status.NOT_SERVED and header == "frame-1" and carried.crop_mask is mask
    assert second[1][1] == "frame-2"
    last.carry([PromptResult(2, Status.NOT_SERVED)], "frame-3")  # prompt 1 removed: forgotten
    assert last.carry([PromptResult(1, Status.NOT_SERVED)], "frame-4")[0][0].crop_mask is None


def test_parameter_changes_are_logged_in_batches():
    from picosam3_ros.nodes.node_config import ChangeLog

    log = ChangeLog(period_s=2.0)
    assert log.add({"threshold": 0.6}, now=100.0) == "parameters changed: threshold=0.6"
    lines = [log.add({"threshold": 0.5 + i / 1000, "max_prompts": i % 16 + 1}, now=100.0 + i * 0.008)
             for i in range(1000)]  # 1,000 changes in 8 s
    written = [line for line in lines if line is not None]
    assert len(written) == 3  # at 102, 104 and 106 s
    assert written[0].startswith("parameters changed (502 changes since the last line; the latest values)")
    assert log.flush(now=107.0) is None  # within the period of the last line
    last = log.flush(now=108.1)  # the wall-clock timer writes what is left
    assert last is not None and "threshold=1.499" in last and "max_prompts=8" in last
    assert log.flush(now=120.0) is None  # nothing left
    many = ChangeLog()
    line = many.add({f"p{i}": i for i in range(30)}, now=0.0)
    assert "and 18 more" in line and len(line) < 300
