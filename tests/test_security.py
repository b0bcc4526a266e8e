"""Files from outside never run code: crafted ``.pth`` checkpoints (both
formats, in-process and through the CLI) are refused in one line before
anything in them runs; no reader in the tree unpickles, evals or loads YAML
unrestricted."""
from __future__ import annotations

import concurrent.futures
import re
from pathlib import Path

import numpy as np
import pytest

from benchmark.errors import UserError
from benchmark.models import torch_pickle
from tests import pth_files as F

REPO = Path(__file__).resolve().parent.parent

# payload -> the global its error line names (os.system pickles as posix.system).
GLOBALS = {"global_os_system": "posix.system", "stack_global_exec": "builtins.exec",
           "inst_os_system": "os.system", "obj_eval": "builtins.eval",
           "hidden_in_state_dict": "builtins.exec"}
LEGACY_PICKLES = ("magic", "protocol", "sys_info", "data", "storage_keys")


def _crafted(tmp_path: Path, fmt: str, payload: str) -> tuple[Path, Path]:
  marker = tmp_path / "MARKER"
  evil = F.payloads(marker)[payload]
  if fmt == "zip":
    data = F.zip_bytes(F.sample_tensors(), data_pkl=evil)
  else:
    data = F.legacy_bytes(F.sample_tensors(), {LEGACY_PICKLES.index(fmt[7:]): evil})
  return F.write(tmp_path / f"{fmt}-{payload}.pth", data), marker


@pytest.mark.parametrize("payload", sorted(GLOBALS))
@pytest.mark.parametrize("fmt", ["zip", *(f"legacy_{p}" for p in LEGACY_PICKLES)])
def test_crafted_pth_is_refused_before_anything_runs(tmp_path, fmt, payload):
  path, marker = _crafted(tmp_path, fmt, payload)
  with pytest.raises(UserError) as e:
    torch_pickle.load(path)
  msg = str(e.value)
  assert msg.startswith(f"{path}: refusing to load {GLOBALS[payload]}:"), msg
  assert "\n" not in msg
  assert not marker.exists()


def test_the_writer_here_writes_what_the_reader_reads(tmp_path):
  """The crafted files above differ from valid ones only in the payload."""
  for name, data in (("l.pth", F.legacy_bytes(F.sample_tensors())),
                     ("z.pth", F.zip_bytes(F.sample_tensors()))):
    got = torch_pickle.load(F.write(tmp_path / name, data))
    for k, v in F.sample_tensors().items():
      assert got[k].dtype == v.dtype and got[k].shape == v.shape
      np.testing.assert_array_equal(got[k], v)


@pytest.mark.parametrize("offset,size,stride,why", [
    (0, (2, 3), (3, 1), None),                 # the valid tensor
    (4, (2, 3), (3, 1), "runs past its storage"),
    (0, (2, 3), (4, 1), "runs past its storage"),
    (-1, (2,), (1,), "non-negative"),
    (0, (2,), (-1,), "non-negative"),
    (0, (1,) * 17, (1,) * 17, "non-negative ints"),   # more dimensions than weights have
    (0, (100000, 100000), (0, 0), "from a storage of 6 elements"),   # 40 GB from 24 bytes
])
def test_tensor_views_stay_inside_their_storage(tmp_path, offset, size, stride, why):
  """``as_strided`` does not check bounds: the reader does, before."""
  w = np.zeros((2, 3), np.float32)
  pkl = F.data_pickle({"w": w}, legacy=False, views={"w": (offset, size, stride)})
  path = F.write(tmp_path / "v.pth", F.zip_bytes({"w": w}, pkl))
  if why is None:
    assert torch_pickle.load(path)["w"].shape == (2, 3)
    return
  with pytest.raises(UserError, match=why):
    torch_pickle.load(path)


def test_crafted_checkpoints_through_the_cli(run_cli, tmp_path):
  """The issue's case (a legacy file whose first pickle is ``os.system``) and
  a zip file whose data.pkl calls ``exec``: exit 2, one line naming the file
  and the global, no marker, nothing in the workdir."""
  from tests.test_cli_errors import error_line, files_under
  from tests.test_fashion_mnist import write_fixture
  write_fixture(tmp_path / "fmnist", n_train=60, n_test=40)
  cases = {"legacy": (_crafted(tmp_path / "l", "legacy_magic", "global_os_system"),
                      "posix.system"),
           "zip": (_crafted(tmp_path / "z", "zip", "stack_global_exec"), "builtins.exec")}

  def run(name):
    (path, _), _ = cases[name]
    return run_cli(["--dataset", "fashion_mnist_quality", "--method", "lp", "--seeds", "0",
                    "--data_dir", tmp_path / "fmnist",
                    f"--config.backbones.efficientnet_lite0.checkpoint={path}"],
                   tmp_path / f"wd_{name}", env={"LEVI_CACHE": str(tmp_path / "cache")})

  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    procs = dict(zip(cases, pool.map(run, cases)))
  for name, proc in procs.items():
    (path, marker), glob = cases[name]
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = error_line(proc.stderr)
    assert line.startswith(f"error: {path}: refusing to load {glob}:"), line
    assert not marker.exists()
    assert files_under(tmp_path / f"wd_{name}") == []


# -- no unrestricted deserialisation anywhere in the tree ------------------------------

SCANNED = ("benchmark", "datasets", "methods", "tools", "run_benchmark.py")
# The one restricted unpickler: its subclass of pickle.Unpickler, nothing else.
UNPICKLER = "benchmark/models/torch_pickle.py"
FORBIDDEN = {
    "pickle.load/loads": re.compile(r"\b(c?[pP]ickle|_pickle)\s*\.\s*loads?\b"),
    "pickle.Unpickler": re.compile(r"\bUnpickler\b"),
    "from pickle import": re.compile(r"\bfrom\s+(c?pickle|_pickle)\s+import\b"),
    "other pickle-based loaders": re.compile(
        r"\b(dill|cloudpickle|shelve|marshal|joblib)\b|\bread_pickle\b|\btorch\s*\.\s*load\b"),
    "np.load(allow_pickle=...)": re.compile(r"\ballow_pickle\s*=\s*(?!\s|False\b)"),
    "yaml.load": re.compile(r"\byaml\s*\.\s*(load|load_all|unsafe_load|full_load)\b"),
    "eval/exec": re.compile(r"(?<![\w.])(eval|exec)\s*\("),
}


def _code(text: str) -> str:
  """``text`` without its comments and string literals (docstrings, messages)."""
  import io
  import tokenize
  out, prev = [], None
  for tok in tokenize.generate_tokens(io.StringIO(text).readline):
    if tok.type in (tokenize.COMMENT, tokenize.STRING):
      out.append(" ")
      prev = None
      continue
    if tok.type in (tokenize.NEWLINE, tokenize.NL):
      out.append("\n")
    elif tok.type in (tokenize.NAME, tokenize.NUMBER, tokenize.OP):
      if tok.type != tokenize.OP and prev is not None and prev != tokenize.OP:
        out.append(" ")   # two words stay two words; `a . b` becomes `a.b`
      out.append(tok.string)
    prev = tok.type
  return "".join(out)


def unsafe_calls(path: Path, rel: str) -> list[str]:
  code = _code(path.read_text())
  hits = []
  for what, rx in FORBIDDEN.items():
    for m in rx.finditer(code):
      if what == "pickle.Unpickler" and rel == UNPICKLER:
        continue
      hits.append(f"{rel}: {what}: {m.group(0)!r}")
  if rel == UNPICKLER:
    n = len(FORBIDDEN["pickle.Unpickler"].findall(code))
    if n != 1:
      hits.append(f"{rel}: pickle.Unpickler appears {n} times, expected the one subclass")
  return hits


def test_no_unrestricted_unpickling_eval_or_yaml_in_the_tree():
  files = [REPO / "run_benchmark.py"] + [p for d in SCANNED[:-1]
                                        for p in sorted((REPO / d).rglob("*.py"))]
  assert len(files) > 50
  hits = [h for p in files for h in unsafe_calls(p, p.relative_to(REPO).as_posix())]
  assert hits == [], "\n".join(hits)


def test_the_tree_scan_finds_what_it_forbids(tmp_path):
  bad = tmp_path / "bad.py"
  bad.write_text("import pickle, yaml, numpy as np\n"
                 "x = pickle.loads(b'')  # pickle.load in a comment is fine\n"
                 "y = np.load('f.npz', allow_pickle=True)\n"
                 "z = yaml.load(open('c.yaml'))\n"
                 "eval('1'); exec ('2')\n"
                 "class U(pickle.Unpickler): pass\n"
                 "s = 'pickle.load(f) in a string is fine'; ast.literal_eval('1'); m.eval()\n")
  hits = unsafe_calls(bad, "bad.py")
  assert len(hits) == 6, hits


# -- shared folders: modes from the umask, no symlink tricks --------------------------

@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_honour_the_umask(tmp_path, umask):
  """Records, arrays, tables, caches and claims: mode 0666 less the umask
  (tempfile.mkstemp made them all 0600, unreadable to a shared group)."""
  import os
  import stat

  from benchmark import locks
  from benchmark.store import RunStore, atomic_write_text, new_temp
  old = os.umask(umask)
  try:
    store = RunStore(tmp_path / "wd")
    rec = store.component_path("ft", "k")
    store.write(rec, {"status": "ok"})
    store.write_arrays(rec.with_suffix(".npz"), {"a": np.arange(3)})
    atomic_write_text(tmp_path / "wd" / "tables" / "t.csv", "a,b\n")
    claim = locks.try_claim(rec.with_suffix(".lock"))
    fd, tmp = new_temp(tmp_path / "wd" / "cache.npy", read_write=True)
    os.close(fd)
    paths = [rec, rec.with_suffix(".npz"), tmp_path / "wd" / "tables" / "t.csv",
             rec.with_suffix(".lock"), tmp]
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in paths}
    claim.release()
  finally:
    os.umask(old)
  assert modes == {p.name: 0o666 & ~umask for p in paths}


def test_planted_symlinks_are_never_followed(tmp_path, monkeypatch):
  """In a shared folder another user may plant a symlink where the harness
  will write: temporaries skip it (O_EXCL | O_NOFOLLOW), a claim is not read
  through it and, once stale, is broken by renaming the link itself."""
  import os

  from benchmark import locks
  from benchmark import store as S
  victim = tmp_path / "victim"
  victim.write_text("precious")
  shared = tmp_path / "shared"
  shared.mkdir()
  names = iter(["aaaa", "bbbb"])
  monkeypatch.setattr(S.secrets, "token_hex", lambda n: next(names))
  (shared / ".r.json.aaaa.tmp").symlink_to(victim)
  S.atomic_write_text(shared / "r.json", "{}")
  assert (shared / "r.json").read_text() == "{}"
  assert victim.read_text() == "precious"
  lock = shared / "k.lock"
  lock.symlink_to(victim)
  assert locks.owner(lock) is None
  assert locks.try_claim(lock) is None          # fresh: someone else's claim, wait
  past = os.lstat(lock).st_mtime - 3600
  os.utime(lock, (past, past), follow_symlinks=False)
  claim = locks.try_claim(lock, stale_s=60)     # stale: broken, taken as a new file
  assert claim is not None and not lock.is_symlink()
  claim.release()
  assert victim.read_text() == "precious"


def test_a_fifo_in_place_of_a_claim_does_not_block(tmp_path):
  import os

  from benchmark import locks
  lock = tmp_path / "k.lock"
  os.mkfifo(lock)
  assert locks.owner(lock) is None
  assert locks.try_claim(lock) is None


def test_wheel_members_extracted_into_a_shared_cache_replace_planted_symlinks(
    tmp_path, monkeypatch):
  import zipfile

  from benchmark import fetch
  whl = tmp_path / "pkg-0.1-py3-none-any.whl"
  with zipfile.ZipFile(whl, "w") as z:
    z.writestr("pkg/a.txt", "A")
    z.writestr("pkg/sub/b.txt", "B")
    z.writestr("pkg/../../escape.txt", "X")
  monkeypatch.setenv("LEVI_CACHE", str(tmp_path / "cache"))
  monkeypatch.setattr(fetch, "wheel", lambda *a: whl)
  victim = tmp_path / "victim"
  victim.write_text("precious")
  out = tmp_path / "cache" / "extracted" / "pkg-0.1"
  (out / "pkg").mkdir(parents=True)
  (out / "pkg" / "a.txt").symlink_to(victim)
  got = fetch.extracted("pkg==0.1", "pkg-*.whl", "pkg/", "no fallback")
  assert (got / "a.txt").read_text() == "A" and not (got / "a.txt").is_symlink()
  assert (got / "sub" / "b.txt").read_text() == "B"
  assert victim.read_text() == "precious"
  assert not (tmp_path / "cache" / "escape.txt").exists()
  assert not (tmp_path / "escape.txt").exists()
