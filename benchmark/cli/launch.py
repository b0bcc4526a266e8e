"""Sweeps as jobs on a cluster engine (submitit): ``--launcher slurm`` (or
``local``, for one machine) splits the (method, seed) runs of a ``--method``
command into ``--launcher.jobs`` shards and submits them as one job array,
each job running the same command with ``--shard i/N`` on the shared
``--workdir``. The submitting command waits for them (or, with ``--nowait``,
prints the job ids and returns) and writes the table from the store; a rerun
submits only the shards whose runs the store lacks and that no job still runs.

Each job is one process (``--shard`` de-duplicates shared components through
claims in the store); ``--launcher.gpus_per_job`` GPUs are its local devices.
"""
from __future__ import annotations

import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path

from benchmark.errors import UserError

LAUNCHERS = ("local", "slurm")
REPO_ROOT = Path(__file__).resolve().parents[2]
# Flags of the submitting command that its jobs do not take.
SUBMITTER_ONLY = ("launcher", "nowait", "shard", "dry_run")
ACTIVE_SLURM_STATES = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING",
                       "RESIZING", "SUSPENDED", "UNKNOWN"}


@dataclasses.dataclass(frozen=True)
class LauncherOptions:
  """The ``--launcher.*`` values, checked."""
  cluster: str
  jobs: int              # 0: one job per (method, seed) run
  partition: str | None
  time_min: int
  gpus_per_job: int
  cpus: int
  mem_gb: int            # 0: the partition's default
  folder: str | None     # submitit's logs and pickles; default WORKDIR/launcher
  nowait: bool


def _int(name: str, text, low: int, example: str) -> int:
  try:
    value = int(str(text).strip())
  except ValueError:
    value = low - 1
  if value < low:
    raise UserError(f"malformed --launcher.{name} {text!r}: give an integer >= {low}, e.g. "
                    f"--launcher.{name} {example}")
  return value


def parse(flag_values) -> LauncherOptions | None:
  """The launcher the flags ask for, or None (run here)."""
  cluster = (flag_values["launcher"].value or "").strip()
  if not cluster:
    given = [n for n in flag_values if n.startswith("launcher.") and flag_values[n].present]
    if given or flag_values["nowait"].value:
      what = f"--{given[0]}" if given else "--nowait"
      raise UserError(f"{what} needs --launcher local or --launcher slurm")
    return None
  if cluster not in LAUNCHERS:
    raise UserError(f"malformed --launcher {cluster!r}: give local (jobs on this machine) "
                    f"or slurm (a job array on a SLURM cluster)")
  if flag_values["shard"].present:
    raise UserError("--launcher splits the sweep into shards itself: drop --shard "
                    "(--launcher.jobs N sets how many)")
  v = lambda n: flag_values[f"launcher.{n}"].value
  partition = (v("partition") or "").strip() or None
  if partition is not None and cluster != "slurm":
    raise UserError("--launcher.partition is for --launcher slurm")
  return LauncherOptions(
      cluster=cluster, jobs=_int("jobs", v("jobs"), 0, "8"), partition=partition,
      time_min=_int("time", v("time"), 1, "120"),
      gpus_per_job=_int("gpus_per_job", v("gpus_per_job"), 0, "1"),
      cpus=_int("cpus", v("cpus"), 1, "4"), mem_gb=_int("mem_gb", v("mem_gb"), 0, "32"),
      folder=(v("folder") or "").strip() or None, nowait=bool(flag_values["nowait"].value))


def job_argv(argv: list[str], workdir: Path) -> list[str]:
  """The submitting command's flags as one job takes them: no launcher flags,
  ``--workdir`` absolute (jobs may start elsewhere)."""
  out, skip = [], False
  for a in argv:
    if skip:
      skip = False
      continue
    name, eq, _ = a.lstrip("-").partition("=")
    if a.startswith("--") and (name in SUBMITTER_ONLY or name.startswith("launcher.")
                               or name == "workdir" or name == "nodry_run"):
      skip = not eq and name not in ("nowait", "dry_run", "nodry_run")
      continue
    out.append(a)
  return out + ["--workdir", str(workdir.absolute())]


def shard_command(argv: list[str], workdir: Path, shard: int, n: int) -> list[str]:
  return [sys.executable, str(REPO_ROOT / "run_benchmark.py"), *job_argv(argv, workdir),
          "--shard", f"{shard}/{n}"]


def executor_parameters(lo: LauncherOptions, n: int) -> dict:
  """``AutoExecutor.update_parameters`` for the job array of ``n`` shards."""
  p = dict(timeout_min=lo.time_min, cpus_per_task=lo.cpus, tasks_per_node=1, nodes=1,
           name="levi-sweep")
  if lo.gpus_per_job:
    p["gpus_per_node"] = lo.gpus_per_job
  if lo.mem_gb:
    p["mem_gb"] = lo.mem_gb
  if lo.cluster == "slurm":
    p["slurm_array_parallelism"] = n
    if lo.partition:
      p["slurm_partition"] = lo.partition
  return p


def sbatch_script(lo: LauncherOptions, n: int, folder: Path) -> str:
  """The sbatch script ``--launcher slurm`` submits for ``n`` shards, without
  SLURM (submitit's own generator, given the parameters its SlurmExecutor
  passes it)."""
  from submitit.slurm import slurm
  params = dict(job_name="levi-sweep", time=lo.time_min, nodes=1, ntasks_per_node=1,
                cpus_per_task=lo.cpus, map_count=n, array_parallelism=n)
  if lo.partition:
    params["partition"] = lo.partition
  if lo.gpus_per_job:
    params["gpus_per_node"] = lo.gpus_per_job
  if lo.mem_gb:
    params["mem"] = f"{lo.mem_gb}GB"
  command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit",
                      shlex.quote(str(folder))])
  return slurm._make_sbatch_string(command=command, folder=folder, **params)


def _executor(lo: LauncherOptions, folder: Path, n: int):
  import submitit
  try:
    ex = submitit.AutoExecutor(folder=folder, cluster=lo.cluster)
  except RuntimeError as e:  # no srun/sbatch here
    raise UserError(f"--launcher slurm needs a SLURM cluster ({e}); submit from a login "
                    f"node, or add --dry_run to see the sbatch script") from None
  ex.update_parameters(**executor_parameters(lo, n))
  return ex


def _submitted_path(folder: Path) -> Path:
  return folder / "submitted.json"


def _still_running(lo: LauncherOptions, folder: Path, job_id: str) -> bool:
  """Whether a job an earlier command submitted (``--nowait``) still runs."""
  if lo.cluster == "local":   # submitit's local job id is the pid of its process
    from benchmark.locks import _pid_alive
    try:
      return _pid_alive(int(job_id))
    except ValueError:
      return False
  import submitit
  try:
    return submitit.SlurmJob(folder, job_id).state.split()[0] in ACTIVE_SLURM_STATES
  except Exception:
    return False


def _wait_for(lo: LauncherOptions, folder: Path, job_id: str, poll_s: float = 5.0) -> None:
  while _still_running(lo, folder, job_id):
    time.sleep(poll_s)


def chosen(ctx, methods, seeds):
  """The protocol's learning-rate choices from the store alone (no training),
  or None while some grid point is not in it."""
  from benchmark import sweep
  from benchmark.runner import NotStored
  ctx.runner.store_only = True
  try:
    return sweep.select(ctx, methods, seeds[0])
  except NotStored:
    return None
  finally:
    ctx.runner.store_only = False


def run(lo: LauncherOptions, ctx, methods, seeds, argv: list[str],
        log) -> tuple[list | None, list[str], dict | None]:
  """Submits the shards the store lacks (and no job runs), waits, and returns
  ``(records, failed, choices)``: every (method, seed) record (None while
  some are missing, or with ``--nowait``), ``failed`` lines (job, shard, log
  paths) and the protocol's learning-rate choices."""
  from benchmark import protocol, sweep
  runs = protocol.jobs(methods, seeds)
  n = min(lo.jobs or len(runs), len(runs))
  folder = Path(lo.folder) if lo.folder else ctx.store.root / "launcher"
  choices = chosen(ctx, methods, seeds)
  if choices is None:  # the grids run first, in the jobs: every shard has work
    todo = list(range(n))
  else:
    done_ctx = ctx.with_lrs(sweep.chosen_lrs(choices))
    todo = [i for i in range(n) if _shard_missing(done_ctx, methods, seeds, (i, n))]
  earlier_n, earlier = _read_submitted(folder)
  running = {i: jid for i, jid in earlier.items()
             if i in todo and earlier_n == n and _still_running(lo, folder, jid)}
  submit = [i for i in todo if i not in running]
  if running:
    log(f"{len(running)} shard(s) still running from an earlier submission: "
        + ", ".join(f"{i}/{n} (job {j})" for i, j in sorted(running.items())))
  jobs = []
  if submit:
    import submitit
    ex = _executor(lo, folder, len(submit))
    fns = [submitit.helpers.CommandFunction(shard_command(argv, ctx.store.root, i, n),
                                            cwd=str(REPO_ROOT)) for i in submit]
    with ex.batch():
      jobs = [ex.submit(f) for f in fns]
    log(f"submitted {len(jobs)} job(s) to {lo.cluster} (of {n} shards; {n - len(todo)} "
        f"done in the store): " + ", ".join(f"{j.job_id} (shard {i}/{n})"
                                            for i, j in zip(submit, jobs)))
    log(f"job logs: {jobs[0].paths.stdout} and .err, one pair per job")
    _write_submitted(folder, n, {**running, **{i: j.job_id for i, j in zip(submit, jobs)}})
  elif not todo:
    log(f"all {n} shard(s) are in the store: nothing to submit")
  if lo.nowait:
    return None, [], choices
  failed = []
  for i, job in zip(submit, jobs):
    try:
      job.result()
    except Exception as e:
      failed.append(f"job {job.job_id} (shard {i}/{n}): {_first_line(e)}; logs "
                    f"{job.paths.stdout} and {job.paths.stderr}")
  for i, jid in running.items():
    _wait_for(lo, folder, jid)
  choices = chosen(ctx, methods, seeds)
  if choices is None:
    return None, failed, None
  return protocol.collect(ctx.with_lrs(sweep.chosen_lrs(choices)), methods, seeds), failed, choices


def _first_line(e: BaseException) -> str:
  lines = [ln for ln in str(e).splitlines() if ln.strip().startswith("error:")]
  return (lines[-1].strip() if lines else type(e).__name__)[:300]


def _shard_missing(ctx, methods, seeds, shard) -> bool:
  """Whether a run of ``shard`` lacks its method record in the store."""
  from benchmark import protocol
  for method, seed in protocol.jobs(methods, seeds, shard):
    key, _ = protocol.method_key(ctx, method, seed)
    if ctx.store.read(ctx.store.method_path(ctx.info.name, method.name, key)) is None:
      return True
  return False


def _read_submitted(folder: Path) -> tuple[int | None, dict[int, str]]:
  """``(n, {shard: job id})`` of the latest submission into ``folder``."""
  try:
    got = json.loads(_submitted_path(folder).read_text())
  except (OSError, ValueError):
    return None, {}
  if not isinstance(got, dict) or not isinstance(got.get("jobs"), dict):
    return None, {}
  return got.get("n"), {int(k): str(v) for k, v in got["jobs"].items() if str(k).isdigit()}


def _write_submitted(folder: Path, n: int, jobs: dict) -> None:
  from benchmark.store import atomic_write_text
  atomic_write_text(_submitted_path(folder),
                    json.dumps({"n": n, "jobs": {str(i): j for i, j in jobs.items()}}) + "\n")


def collect_hint(argv: list[str]) -> str:
  """The command that collects a ``--nowait`` submission: the same one."""
  shown = [a for a in argv if a not in ("--nowait",)]
  return "python run_benchmark.py " + " ".join(shlex.quote(a) for a in shown)

