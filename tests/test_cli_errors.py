"""Bad command lines: exit status 2, one ``error:`` line naming the fix on
stderr, and nothing written under the workdir.

Every case is ``python run_benchmark.py ARGS`` from the point where the
harness is imported: a fork of one process that imported it once
(``tests.cli_forks``), so the whole file costs the cases' own work.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.cli_forks import cli_argv, run_many

# A log line from absl / JAX (``WARNING: ...``, ``I0101 12:00:00.000 ...``) or
# the harness's own progress line (``[12:00:00] loading ...``): not the error.
_LOG_LINE = re.compile(r"^(WARNING\b|[IWEF]\d{4}\s|\[\d\d:\d\d:\d\d\]\s)")

SS = ["--dataset", "synthetic_spurious"]

# name -> (args; ``{csv:NAME}`` is replaced by the path of CSV NAME below,
# substrings the error line must contain: the fix it names)
CASES: dict[str, tuple[list[str], list[str]]] = {
    "unknown_method": (["--method", "levii", *SS, "--seeds", "0"],
                       ["unknown method 'levii'", "Did you mean levi"]),
    "unknown_method_in_list": (["--method", "ft,levii", *SS, "--seeds", "0"],
                               ["unknown method 'levii'", "levi"]),
    "unknown_dataset": (["--method", "ft", "--dataset", "synthetic_spurios", "--seeds", "0"],
                        ["unknown dataset 'synthetic_spurios'", "synthetic_spurious"]),
    "unknown_backbone": (["--method", "ft", *SS, "--backbone", "tabular_mpl", "--seeds", "0"],
                         ["unknown backbone 'tabular_mpl'", "tabular_mlp"]),
    "unknown_preset": (["--method", "ft", *SS, "--preset", "smok", "--seeds", "0"],
                       ["unknown preset 'smok'", "Did you mean smoke"]),
    "seeds_not_ints": (["--method", "ft", *SS, "--seeds", "a,b"],
                       ["--seeds", "0,1,2"]),
    "seeds_negative": (["--method", "ft", *SS, "--seeds", "-1"],
                       ["--seeds", "non-negative"]),
    "seeds_repeated": (["--method", "ft", *SS, "--seeds", "0,0"],
                       ["--seeds", "distinct"]),
    "missing_method": ([*SS, "--seeds", "0"],
                       ["--method"]),
    "csv_missing_label": (["--method", "ft", "--dataset", "tabular",
                           "--data_dir", "{csv:no_label}", "--seeds", "0"],
                          ["label"]),
    "csv_unknown_split": (["--method", "ft", "--dataset", "tabular",
                           "--data_dir", "{csv:holdout}", "--seeds", "0"],
                          ["'holdout'", "ood:<group>"]),
    "data_dir_missing": (["--method", "ft", "--dataset", "tabular",
                          "--data_dir", "{csv:does_not_exist}", "--seeds", "0"],
                         ["does not exist", "--data_dir"]),
    "negative_lr": (["--method", "ft", *SS, "--seeds", "0", "--config.lr.ft=-1"],
                    ["lr.ft", "--config.lr.ft"]),
    "nan_lr": (["--method", "ft", *SS, "--seeds", "0", "--config.lr.ft=nan"],
               ["lr.ft", "--config.lr.ft"]),
    # MovieLens: a --data_dir holding none of the expected files.
    "movielens_empty_data_dir": (["--method", "lp", "--dataset", "movielens_genre",
                                  "--data_dir", "{dir:empty}", "--seeds", "0"],
                                 ["u.data", "movielens/100k-ratings"]),
    # Amazon Review: no files (the usual case: they cannot be downloaded here).
    "amazon_no_data": (["--method", "lp", "--dataset", "amazon_reviews", "--seeds", "0"],
                       ["amazon_reviews_us_{Books_v1_02,", "--data_dir", "meta_"]),
    "amazon_empty_data_dir": (["--method", "lp", "--dataset", "amazon_reviews",
                               "--data_dir", "{dir:empty}", "--seeds", "0"],
                              ["amazon_reviews_us_{Books_v1_02,", "amazon_us_reviews/"]),
    # Another Books version than the default: said, with the option that reads it.
    "amazon_other_books_version": (["--method", "lp", "--dataset", "amazon_reviews",
                                    "--data_dir", "{dir:books_v1_00}", "--seeds", "0"],
                                   ["missing amazon_reviews_us_Books_v1_02.tsv(.gz)",
                                    "amazon_reviews_us_Books_v1_00.tsv.gz is there",
                                    "--config.data.amazon_reviews.books_version=v1_00"]),
    "data_dir_unknown_dataset": (["--method", "lp", "--dataset", "movielens_genre",
                                  "--data_dir", "amazon_review=/x", "--seeds", "0"],
                                 ["unknown dataset 'amazon_review'", "amazon_reviews"]),
    # T5 needs the user's weights; the error says which flag gives them.
    "t5_without_checkpoint": (["--method", "lp", "--dataset", "movielens_genre",
                               "--backbone", "t5_small", "--seeds", "0"],
                              ["--config.backbones.t5_small.checkpoint"]),
    # A backbone of the wrong modality for the dataset.
    "backbone_wrong_modality": (["--method", "ft", *SS, "--backbone", "minilm_l6",
                                 "--seeds", "0"],
                                ["tabular", "--backbone tabular_mlp"]),
    # --config.* overrides: caught before absl / ml_collections parse them.
    "config_unknown_key": (["--method", "ft", *SS, "--seeds", "0", "--config.lr.fft=0.1"],
                           ["unknown config key 'lr.fft'", "lr.ft", "--list_config"]),
    "config_wrong_type": (["--method", "ft", *SS, "--seeds", "0", "--config.epochs=abc"],
                          ["epochs takes an int", "--config.epochs=5"]),
    "config_malformed_grid": (["--method", "ft", *SS, "--seeds", "0",
                               "--config.protocol.lr_grid=1e-3,x"],
                              ["protocol.lr_grid", "comma-separated"]),
    # Weight averaging across architectures / pre-trained starts is refused.
    "soup_of_fs": (["--method", "soup_uniform", *SS, "--seeds", "0",
                    "--config.soup.kinds=ft,fs"],
                   ["cannot average fs", "random weights", "one pre-trained start"]),
    "soup_bad_lrs": (["--method", "soup_greedy", *SS, "--seeds", "0",
                      "--config.soup.lrs=1e-3,x"],
                     ["soup.lrs", "--config.soup.lrs="]),
    # Model Ratatouille needs auxiliary tasks the dataset declares.
    "ratatouille_no_aux": (["--method", "ratatouille", "--dataset", "tabular",
                            "--data_dir", "{csv:good}", "--seeds", "0"],
                           ["declares no auxiliary tasks", "aux:<task>:train"]),
    "ratatouille_unknown_aux": (["--method", "ratatouille_greedy", *SS, "--seeds", "0",
                                 "--config.ratatouille.aux=s1_task,colour"],
                                ["ratatouille.aux='s1_task,colour'",
                                 "declares the auxiliary tasks s1_task, s2_reversed"]),
    "shard_malformed": (["--method", "ft", *SS, "--seeds", "0", "--shard", "2/2"],
                        ["--shard '2/2'", "--shard 0/2"]),
    "table_unknown": (["--table", "6"], ["--table '6'", "e.g. --table 1"]),
    # Misspelt flags: the harness's one line with a did-you-mean, not absl's FATAL.
    "flag_misspelt": (["--metod", "ft", *SS, "--seeds", "0"],
                      ["unknown flag --metod", "did you mean --method?", "--help"]),
    "flag_misspelt_bool": (["--method", "ft", *SS, "--dryrun"],
                           ["unknown flag --dryrun", "did you mean --dry_run?"]),
    "flag_unknown": (["--refrence", "ft", *SS], ["unknown flag --refrence", "--help"]),
    "stray_argument": (["--method", "ft", "levi", *SS, "--seeds", "0"],
                       ["unexpected argument 'levi'", "--method ft,levi"]),
    # The vision tables without their TFDS data: the builder and the fix named.
    "table_vision_no_weights": (["--table", "2", "--data_dir", "{dir:empty}"],
                                ["vit_b16 needs its weights",
                                 "--config.backbones.vit_b16.checkpoint"]),
    "table_vision": (["--table", "2", "--backbone", "vit_tiny", "--data_dir", "{dir:empty}"],
                     ["none of its datasets", "diabetic_retinopathy_detection/original",
                      "downloads/manual", "imagenet_sketch", "--data_dir"]),
    "imagenet_sketch_no_data": (["--method", "lp", "--dataset", "imagenet_sketch",
                                 "--backbone", "vit_tiny", "--data_dir", "{dir:empty}",
                                 "--seeds", "0"],
                                ["imagenet_sketch", "tfds build imagenet_sketch",
                                 "--data_dir"]),
    "retinopathy_no_data": (["--method", "lp", "--dataset", "retinopathy_quality",
                             "--backbone", "vit_tiny", "--data_dir", "{dir:empty}",
                             "--seeds", "0"],
                            ["diabetic_retinopathy_detection/original", "downloads/manual",
                             "--data_dir"]),
    "table_and_method": (["--table", "5", "--method", "ft"], ["either --table"]),
    "figure_unknown": (["--figure", "5"], ["--figure '5'", "scatter"]),
    # Data files cut short or corrupt; checkpoints broken or of another model.
    "csv_gz_truncated": (["--method", "ft", "--dataset", "tabular",
                          "--data_dir", "{csv:trunc_gz}", "--seeds", "0"],
                         ["truncated or corrupt compressed", "again"]),
    "movielens_u_data_truncated": (["--method", "lp", "--dataset", "movielens_genre",
                                    "--data_dir", "{dir:ml_cut}", "--seeds", "0"],
                                   ["u.data", "truncated"]),
    "safetensors_truncated": (["--method", "lp", "--dataset", "movielens_genre", "--seeds", "0",
                               "--config.backbones.minilm_l6.checkpoint={dir:minilm_cut}"],
                              ["model.safetensors", "not a complete safetensors file",
                               "download or save it again"]),
    "efficientnet_checkpoint_truncated": (
        ["--method", "lp", "--dataset", "fashion_mnist_quality", "--data_dir", "{dir:fmnist}",
         "--seeds", "0", "--config.backbones.efficientnet_lite0.checkpoint={dir:lite0_cut}"],
        ["lite0_cut.pth", "not a readable PyTorch state dict", "download or save it again"]),
    "checkpoint_other_architecture": (["--method", "lp", "--dataset", "movielens_genre",
                                       "--backbone", "t5_small", "--seeds", "0",
                                       "--config.backbones.t5_small.checkpoint={dir:minilm}"],
                                      ["model_type 'bert' is not T5"]),
}

_GOOD_ROWS = [  # a valid tabular CSV body, minus whichever column a case drops
    ("1.0", "a", "0", "pretrain"), ("2.0", "b", "1", "pretrain"),
    ("0.5", "a", "0", "train"), ("1.5", "b", "1", "train"),
    ("0.2", "a", "0", "val"), ("1.2", "b", "1", "val"),
    ("0.3", "a", "0", "test_id"), ("1.3", "b", "1", "test_id"),
    ("0.4", "c", "0", "ood:g1"), ("1.4", "c", "1", "ood:g1"),
]


def write_fixtures(folder: Path) -> dict[str, Path]:
  """The bad files the cases point at, written here (never downloaded)."""
  import gzip
  import shutil

  from benchmark.models.bert import minilm_dir
  from datasets import movielens as M
  from tests.test_movielens import write_grouplens

  folder.mkdir(parents=True, exist_ok=True)
  no_label = folder / "no_label.csv"
  no_label.write_text("num_a,cat_b,split\n"
                      + "".join(f"{n},{c},{s}\n" for n, c, _, s in _GOOD_ROWS))
  holdout = folder / "holdout.csv"
  holdout.write_text("num_a,cat_b,label,split\n"
                     + "".join(f"{n},{c},{y},{s}\n" for n, c, y, s in _GOOD_ROWS)
                     + "0.9,a,1,holdout\n")
  good = folder / "good.csv"
  good.write_text("num_a,cat_b,label,split\n"
                  + "".join(f"{n},{c},{y},{s}\n" for n, c, y, s in _GOOD_ROWS))
  (folder / "empty").mkdir(exist_ok=True)
  (folder / "books_v1_00").mkdir(exist_ok=True)
  (folder / "books_v1_00" / "amazon_reviews_us_Books_v1_00.tsv.gz").write_bytes(
      gzip.compress(b"marketplace\tcustomer_id\n"))
  body = "num_a,cat_b,label,split\n" + "".join(
      f"{i / 7:.6f},{'abc'[i % 3]},{i % 2},{_GOOD_ROWS[i % 10][3]}\n" for i in range(3000))
  blob = gzip.compress(body.encode())
  trunc_gz = folder / "trunc.csv.gz"
  trunc_gz.write_bytes(blob[: len(blob) // 2])
  ml_cut = folder / "ml-100k"
  write_grouplens(M.load_frame(None).iloc[:500], ml_cut)
  data = (ml_cut / "u.data").read_bytes()
  cut = len(data) // 2
  while data[cut - 1:cut] == b"\n":  # mid-line
    cut += 1
  (ml_cut / "u.data").write_bytes(data[:cut])
  minilm = Path(minilm_dir())
  minilm_cut = folder / "minilm_cut"
  shutil.copytree(minilm, minilm_cut, dirs_exist_ok=True)
  st = minilm_cut / "model.safetensors"
  st.write_bytes(st.read_bytes()[: 3_000_000])
  from benchmark.models.efficientnet import weights_path
  from tests.test_fashion_mnist import write_fixture
  write_fixture(folder / "fmnist", n_train=60, n_test=40)
  lite0_cut = folder / "lite0_cut.pth"
  lite0_cut.write_bytes(Path(weights_path()).read_bytes()[:5_000_000])
  return {"no_label": no_label, "holdout": holdout, "good": good, "fmnist": folder / "fmnist",
          "lite0_cut": lite0_cut,
          "does_not_exist": folder / "does_not_exist.csv", "empty": folder / "empty",
          "books_v1_00": folder / "books_v1_00",
          "trunc_gz": trunc_gz, "ml_cut": ml_cut, "minilm_cut": minilm_cut, "minilm": minilm}


def resolve(args: list[str], files: dict[str, Path]) -> list[str]:
  """Replaces ``{csv:NAME}`` / ``{dir:NAME}`` (also inside ``--flag=...``)."""
  return [re.sub(r"\{(?:csv|dir):(\w+)\}", lambda m: str(files[m.group(1)]), a) for a in args]


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory):
  """name -> (CompletedProcess, workdir) for every case: each a fork of one
  process that imported the harness once (``tests.cli_forks``), two at a time."""
  base = tmp_path_factory.mktemp("cli_errors")
  files = write_fixtures(base / "files")
  workdirs = {name: base / "workdirs" / name for name in CASES}
  procs = run_many({name: cli_argv(resolve(args, files), workdirs[name])
                    for name, (args, _) in CASES.items()})
  return {name: (procs[name], workdirs[name]) for name in CASES}


def error_line(stderr: str) -> str:
  """The single ``error:`` line of ``stderr``; fails unless that is all the
  user sees apart from log lines."""
  assert "Traceback" not in stderr, stderr
  lines = [l.rstrip() for l in stderr.splitlines() if l.strip()]
  assert lines, "nothing on stderr"
  assert lines[-1].startswith("error:"), stderr
  messages = [l for l in lines if not _LOG_LINE.match(l)]
  assert len(messages) == 1, f"expected one error line, got {messages!r}"
  return messages[0]


def files_under(workdir: Path) -> list[Path]:
  return [p for p in workdir.rglob("*") if p.is_file()] if workdir.exists() else []


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_exits_2_with_one_error_line(cli_results, name):
  proc, workdir = cli_results[name]
  assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
  line = error_line(proc.stderr)
  for fragment in CASES[name][1]:
    assert fragment in line, f"{fragment!r} not in {line!r}"
  assert not (workdir / "runs").exists() or not files_under(workdir / "runs")
  assert files_under(workdir) == [], files_under(workdir)
  assert "Traceback" not in proc.stdout


def test_list_prints_every_name(run_cli, tmp_path):
  from benchmark import configs
  from benchmark.models import BACKBONES
  from datasets import DATASETS
  from methods import METHODS

  workdir = tmp_path / "wd"
  proc = run_cli(["--list"], workdir)
  assert proc.returncode == 0, proc.stderr
  assert "Traceback" not in proc.stderr
  words = set(re.findall(r"[\w]+", proc.stdout))
  for reg in (METHODS, DATASETS, BACKBONES):
    names = reg.names()
    assert names
    missing = [n for n in names if n not in words]
    assert not missing, f"--list does not print {missing}"
  for p in configs.PRESETS:
    assert p in words
  assert files_under(workdir) == []


def test_unwritable_workdir(run_cli, tmp_path):
  """A --workdir that cannot be created (its parent is a file; chmod does not
  stop root, so this is the portable way to get EACCES-like failures)."""
  (tmp_path / "afile").write_text("x")
  proc = run_cli(["--method", "ft", *SS, "--seeds", "0"], tmp_path / "afile" / "sub")
  assert proc.returncode == 2
  line = error_line(proc.stderr)
  assert "not writable" in line and "--workdir" in line
