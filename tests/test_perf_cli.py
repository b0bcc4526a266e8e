"""The performance script's plumbing (not its timings: those are a
benchmark, run by hand and recorded in docs/performance.md)."""
import pytest

from benchmark import perf


def test_targets_compare_the_right_way():
  assert perf.met("ft_step_vs_torch", 1.2) and not perf.met("ft_step_vs_torch", 1.19)
  assert perf.met("peak_rss_gib", 7.9) and not perf.met("peak_rss_gib", 8.1)
  assert perf.met("component_reuse", 1.0) and not perf.met("component_reuse", 0.9)
  assert set(perf.TARGETS) == {"ft_step_vs_torch", "ft_step_mfu", "cached_epoch_speedup",
                               "dispatch_efficiency", "pipeline_efficiency",
                               "component_reuse", "peak_rss_gib", "sweep_speedup"}


def test_sweep_scores_agree_to_the_tolerance_and_name_the_same_results():
  a = {("ft", 0): {"val": 1.0, "ood": 1.2}, ("lp", 0): {"val": 1.1, "ood": 1.3}}
  assert perf.same_scores(a, {k: dict(v) for k, v in a.items()})
  assert not perf.same_scores(a, {**a, ("ft", 0): {"val": 1.0 + 1e-12, "ood": 1.2}})
  assert perf.same_scores(a, {**a, ("ft", 0): {"val": 1.0 + 5e-5, "ood": 1.2}}, tol=1e-4)
  assert not perf.same_scores(a, {**a, ("ft", 0): {"val": 1.0 + 2e-4, "ood": 1.2}}, tol=1e-4)
  assert not perf.same_scores(a, {("ft", 0): a[("ft", 0)]})
  assert not perf.same_scores(a, {**a, ("ft", 0): {"val": 1.0}})


def test_unknown_section_is_a_one_line_error(capsys):
  assert perf.main(["--only", "ft_stp"]) == 2
  err = capsys.readouterr().err.strip()
  assert err.count("\n") == 0 and "ft_stp" in err and "ft_step" in err


def test_side_by_side_takes_medians():
  calls = []
  t = perf._side_by_side([lambda: calls.append("a"), lambda: calls.append("b")], 3)
  assert calls == ["a", "b"] * 4 and len(t) == 2 and all(x >= 0 for x in t)


def test_accel_section_reports_each_backbone():
  # Plumbing only (tiny sizes on CPU); the real figures need an accelerator.
  got = perf.accel(batch=2, seq=8, steps=1, reps=1, backbones=("minilm_l6",))["detail"]
  assert got["batch"] == 2 and got["matmul_bf16_gflop_per_s"] > 0
  assert got["minilm_l6"]["examples_per_s"] > 0 and 0 < got["minilm_l6"]["mfu"] < 1
  assert got["minilm_l6"]["step_gflop"] > 0
  assert "accel" not in perf.CPU_SECTIONS and "accel" in perf.SECTIONS


@pytest.mark.slow
def test_sweep_section_times_before_and_now_and_checks_the_numbers(tmp_path):
  # Plumbing at toy size (the synthetic benchmark, smoke preset); the figure
  # itself is a benchmark (docs/performance.md).
  args = "--dataset synthetic_spurious --method l2sp --seeds 0 --preset smoke"
  got = perf.sweep(tmp_path, args, timeout_s=600)
  d = got["detail"]
  assert got["sweep_speedup"] == d["wall_s_before"] / d["wall_s_now"] > 0
  assert d["same_scores"] and d["method_results"] == 1
  # Each run compiled from its own empty cache; the records say how long.
  assert d["phases_s_now"]["compile_within_components"] > 0
  assert d["phases_s_now"]["component_records"] > 0
  assert 0 < d["sweep_efficiency"] < 1 and 0 < d["sweep_efficiency_before"] < 1
  assert "sweep" in perf.CPU_SECTIONS
