"""``--launcher``: a sweep as a submitit job array of ``--shard i/N`` jobs on
one workdir. The local executor runs real subprocesses; the SLURM script is
submitit's own, generated without SLURM."""
from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.cli import launch
from tests.cli_forks import cli_argv, run_many

ARGS = ["--method", "ft,lp", "--dataset", "synthetic_spurious", "--seeds", "0"]
TABLE = Path("tables") / "synthetic_spurious.csv"


def test_sbatch_script_of_a_job_array(tmp_path):
  lo = launch.LauncherOptions(cluster="slurm", jobs=8, partition="gpu", time_min=60,
                              gpus_per_job=1, cpus=2, mem_gb=0, folder=None, nowait=False)
  script = launch.sbatch_script(lo, 8, tmp_path / "launcher")
  print(script)
  for line in ("#SBATCH --array=0-7%8", "#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1",
               "#SBATCH --ntasks-per-node=1", "#SBATCH --cpus-per-task=2", "#SBATCH --time=60",
               "-u -m submitit.core._submit"):
    assert line in script, line


def test_job_command_is_the_same_command_with_a_shard(tmp_path):
  argv = ["--method", "ft", "--launcher", "slurm", "--launcher.jobs=8", "--nowait",
          "--workdir", "rel", "--dry_run", "--config.epochs=2"]
  cmd = launch.shard_command(argv, tmp_path, 3, 8)
  assert cmd[2:] == ["--method", "ft", "--config.epochs=2", "--workdir", str(tmp_path),
                     "--shard", "3/8"]


def test_bad_launcher_flags_are_one_line(tmp_path):
  cases = {says: extra for extra, says in (
      (["--launcher", "pbs"], "give local"),
      (["--launcher", "local", "--launcher.jobs", "x"], "--launcher.jobs"),
      (["--launcher.partition", "gpu"], "needs --launcher"),
      (["--launcher", "local", "--shard", "0/2"], "drop --shard"))}
  procs = run_many({says: cli_argv([*ARGS, *extra], tmp_path / "w")
                    for says, extra in cases.items()})
  for says, r in procs.items():
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("error:"), r.stderr
    assert says in r.stderr, r.stderr
  assert not (tmp_path / "w").exists()


def test_slurm_dry_run_prints_the_script(run_cli, tmp_path):
  r = run_cli([*ARGS, "--launcher", "slurm", "--launcher.jobs", "8", "--launcher.partition",
               "gpu", "--launcher.gpus_per_job", "1", "--dry_run"], tmp_path / "w")
  assert r.returncode == 0, r.stderr
  assert "#SBATCH --array=0-1%2" in r.stdout and "--shard 1/2" in r.stdout  # 2 runs: 2 jobs


@pytest.mark.slow
def test_local_launcher_writes_the_one_command_table_and_resubmits_only_missing(
    run_cli, tmp_path):
  one = run_cli(ARGS, tmp_path / "one")
  assert one.returncode == 0, one.stderr
  wd = tmp_path / "jobs"
  r = run_cli([*ARGS, "--launcher", "local", "--launcher.jobs", "2"], wd, timeout=240)
  assert r.returncode == 0, r.stderr
  assert "submitted 2 job(s) to local" in r.stderr
  assert (wd / TABLE).read_bytes() == (tmp_path / "one" / TABLE).read_bytes()
  assert len(list((wd / "launcher").glob("*_0_log.out"))) == 2

  lp = next((wd / "runs" / "methods" / "synthetic_spurious" / "lp").glob("*.json"))
  lp.unlink()  # one (method, seed) run missing: only its shard goes again
  r = run_cli([*ARGS, "--launcher", "local", "--launcher.jobs", "2"], wd, timeout=240)
  assert r.returncode == 0, r.stderr
  assert "submitted 1 job(s) to local (of 2 shards; 1 done in the store)" in r.stderr
  assert (wd / TABLE).read_bytes() == (tmp_path / "one" / TABLE).read_bytes()
