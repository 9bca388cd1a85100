"""The soak's report: memory, counters and the acceptance figures, judged from what was observed."""

from __future__ import annotations

import copy
import json
import os

import pytest

from vla_eval.fuzz_messages import STRATEGIES
from vla_eval.soak import (
    FUZZ_TOPICS,
    MAX_RSS_GROWTH_PCT,
    SoakOptions,
    build_report,
    by_kind_and_label,
    foreign_nodes,
    log_counts,
    markdown_table,
    rss_growth,
    rss_mb,
    soak_overrides,
    split_counters,
    vmrss_kib,
)

STATUS = "Name:\tpython\nVmPeak:\t  300000 kB\nVmRSS:\t  123456 kB\nThreads:\t4\n"
KINDS = ("position_limit", "joint_speed", "tool_step_m", "tool_step_rad", "previous_episode")


def _observed(**changes) -> dict:
    observed = {
        "monitor": {
            "commands": 900,
            "episodes": 3,
            "violations": dict.fromkeys(KINDS, 0),
            "max_joint_speed_rad_s": 2.5,
            "max_tool_step_m": 0.04,
            "max_tool_step_rad": 0.1,
        },
        "counters": {
            "actuation": {
                "rejected_actions": 7,
                "servo_overruns": 3,
                "actions": 100,
                "unexpected_error.action": 0,
            },
            "perception": {"rejected.frame.primary": 4, "observations": 50, "bad_frame.wrist": 1},
        },
        "episode_starts": 3,
        "episode_ends": [{"success": True}, {"success": False}],
        "arm_publishers": {"actuation": 900, "soak_fuzz": 12},
        "violations": [],
        "monitor_errors": [],
        "published": {"action": {"valid": 3, "nested": 2}},
        "unpublishable": {},
        "starved": {},
        "fuzz_lag_s": [0.0, 0.01, 0.5],
        "sim_time_per_wall_s": 0.8,
        "foreign_nodes": {},
    }
    observed.update(changes)
    return observed


RSS = {"sim": 300.0, "actuation": 100.0}
LOGS = {
    "sim": {"unexpected_error_lines": 0, "rejected_trajectory_lines": 5},
    "actuation": {"unexpected_error_lines": 0},
}


def _report(observed=None, rss_end=None, crashes=(), logs=None) -> dict:
    return build_report(
        SoakOptions(minutes=1.0, command="vla-stack soak --minutes 1"),
        observed=observed or _observed(),
        rss_after_warmup=RSS,
        rss_end=rss_end or {"sim": 301.0, "actuation": 102.0},
        crashes=list(crashes),
        soak_s=60.2,
        logs=logs or copy.deepcopy(LOGS),
    )


def test_vmrss_is_read_from_proc_status_text():
    assert vmrss_kib(STATUS) == 123456
    assert vmrss_kib("Name:\tzombie\n") is None
    own = rss_mb({"me": os.getpid(), "gone": 2**22 + 17})
    assert own["me"] > 10 and own["gone"] is None


def test_rss_growth_in_percent_and_missing_values():
    growth = rss_growth({"a": 100.0, "b": 200.0, "c": None}, {"a": 104.9, "b": 190.0, "c": 50.0})
    assert growth["a"] == {"after_warmup_mb": 100.0, "end_mb": 104.9, "growth_pct": 4.9}
    assert growth["b"]["growth_pct"] == -5.0 and growth["c"]["growth_pct"] is None


def test_counters_split_into_unexpected_rejections_and_overruns():
    unexpected, rejections, overruns = split_counters(
        {
            "actuation": {
                "unexpected_error.joint_state": 2,
                "rejected_actions": 1,
                "servo_overruns": 9,
                "actions": 5,
            }
        }
    )
    assert unexpected == {"actuation": {"joint_state": 2}}
    assert rejections == {"actuation": {"rejected_actions": 1}}
    assert overruns == {"actuation.servo_overruns": 9}


def test_a_clean_run_passes_with_every_field():
    report = _report()
    assert report["passed"], report["acceptance"]
    for key in ("command", "date", "machine", "crashes", "rss", "arm", "episodes", "unexpected_errors"):
        assert key in report
    for key in ("rejections", "fuzz", "load", "acceptance"):
        assert key in report
    assert report["episodes"] == {"started": 3, "completed": 2, "succeeded": 1}
    assert report["rejections"]["perception"] == {"bad_frame.wrist": 1, "rejected.frame.primary": 4}
    assert report["load"]["overruns"] == {"actuation.servo_overruns": 3}
    assert report["acceptance"]["max_rss_growth_pct"]["value"] == 2.0
    json.dumps(report)  # serialisable as is


@pytest.mark.parametrize(
    ("kind", "figure"),
    [
        ("position_limit", "position_or_speed_limit"),
        ("joint_speed", "position_or_speed_limit"),
        ("tool_step_m", "tool_step_beyond_bound"),
        ("tool_step_rad", "tool_step_beyond_bound"),
        ("previous_episode", "previous_episode_commands"),
    ],
)
def test_one_violation_of_any_kind_fails_its_figure(kind, figure):
    observed = _observed()
    observed["monitor"]["violations"][kind] = 1
    report = _report(observed)
    assert not report["passed"] and not report["acceptance"][figure]["pass"]
    assert [name for name, f in report["acceptance"].items() if not f["pass"]] == [figure]


def test_a_crash_memory_growth_and_unexpected_errors_each_fail():
    assert not _report(crashes=["node 'policy' exited with code 1"])["acceptance"]["crashes"]["pass"]
    grown = _report(rss_end={"sim": 301.0, "actuation": 100.0 + MAX_RSS_GROWTH_PCT})
    assert not grown["acceptance"]["max_rss_growth_pct"]["pass"]
    assert _report(rss_end={"sim": 301.0, "actuation": 104.9})["acceptance"]["max_rss_growth_pct"]["pass"]
    gone = _report(rss_end={"sim": 301.0, "actuation": None})
    assert not gone["acceptance"]["max_rss_growth_pct"]["pass"]
    counted = _observed(counters={"policy": {"unexpected_error.image.wrist": 1}})
    assert not _report(counted)["acceptance"]["unexpected_errors"]["pass"]
    logs = copy.deepcopy(LOGS)
    logs["sim"]["unexpected_error_lines"] = 1
    assert not _report(logs=logs)["acceptance"]["unexpected_errors"]["pass"]
    # the same errors on /diagnostics and in the (throttled) log are counted once
    counted = _observed(counters={"actuation": {"unexpected_error.joint_state": 3}})
    logs["sim"]["unexpected_error_lines"] = 0
    logs["actuation"]["unexpected_error_lines"] = 2
    assert _report(counted, logs=logs)["acceptance"]["unexpected_errors"]["value"] == 3


def test_another_graph_on_the_domain_is_found_and_fails_the_run():
    census = {"sim": 2, "actuation": 1, "soak_fuzz": 1, "fake_robot": 1}
    found = foreign_nodes(census, ["sim", "actuation", "soak_fuzz"])
    assert found == {"fake_robot": 1, "sim": 2}
    report = _report(_observed(foreign_nodes=found))
    assert not report["passed"] and not report["acceptance"]["foreign_nodes_on_domain"]["pass"]
    assert foreign_nodes({"sim": 1, "soak_fuzz": 1}, ["sim", "soak_fuzz"]) == {}


def test_a_soak_cut_short_fails_and_overruns_count_from_the_warm_up():
    short = build_report(
        SoakOptions(minutes=1.0),
        observed=_observed(counters_after_warmup={"actuation": {"servo_overruns": 1}}),
        rss_after_warmup=RSS,
        rss_end=RSS,
        crashes=[],
        soak_s=30.0,
        logs=copy.deepcopy(LOGS),
    )
    assert not short["passed"] and short["acceptance"]["soak_minutes_completed"] == {
        "value": 0.5,
        "bound": ">= 1",
        "pass": False,
    }
    assert short["load"]["overruns_during_soak"] == {"actuation.servo_overruns": 2}


def test_a_soak_that_judged_no_command_fails():
    observed = _observed()
    observed["monitor"]["commands"] = 0
    assert not _report(observed)["acceptance"]["arm_commands_judged"]["pass"]


def test_the_table_lists_every_figure_and_node():
    table = markdown_table(_report())
    for name in _report()["acceptance"]:
        assert f"| {name} |" in table
    assert "| rss actuation (MB) | 100 -> 102 (2 %) |" in table
    assert table.splitlines()[1].startswith("|---|")


def test_log_counts_read_the_guard_and_the_sims_rejections(tmp_path):
    (tmp_path / "sim.log").write_text("rejected trajectory on arm: x\nrejected trajectory on gripper: y\n")
    (tmp_path / "policy.log").write_text("callback 'x' raised ValueError: v (unexpected, #1); node goes on\n")
    counts = log_counts(tmp_path, ["sim", "policy", "actuation"])
    assert counts["sim"] == {"unexpected_error_lines": 0, "rejected_trajectory_lines": 2}
    assert (
        counts["policy"] == {"unexpected_error_lines": 1}
        and counts["actuation"]["unexpected_error_lines"] == 0
    )


def test_options_refuse_nonsense_and_the_graph_runs_episodes_forever():
    with pytest.raises(ValueError, match="--minutes 0"):
        SoakOptions(minutes=0)
    with pytest.raises(ValueError, match="--warmup-s -1"):
        SoakOptions(minutes=1, warmup_s=-1)
    overrides = soak_overrides(SoakOptions(minutes=1, policy="scripted", seed=4))
    assert overrides["sim"]["episodes"] == 0 and overrides["sim"]["seed"] == 4
    assert overrides["policy"]["backend"] == "scripted" and overrides["policy"]["use_privileged_state"]


def test_every_fuzzed_topic_has_a_kind_and_a_few_hz():
    assert {kind for _, kind, _ in FUZZ_TOPICS} <= set(STRATEGIES)
    assert all(0 < rate <= 5 for _, _, rate in FUZZ_TOPICS)
    assert by_kind_and_label({("a", "x"): 2, ("a", "y"): 1}) == {"a": {"x": 2, "y": 1}}
