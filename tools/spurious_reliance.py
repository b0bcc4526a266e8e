"""How much each trained model leans on the spurious features of
``synthetic_spurious``: OOD accuracy with s1, s2 or both set to 0 (absent).

  python run_benchmark.py --method ft,fs,levi,levi_pretrained,a3,a4 \
      --dataset synthetic_spurious --seeds 0,1,2,3,4 --workdir /tmp/w
  python tools/spurious_reliance.py --workdir /tmp/w --seeds 0,1,2,3,4

Reads the components from the store (trains nothing; a component missing from
the store is skipped). A large gain from zeroing a feature means the model's
OOD errors come from using it.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "results", "Run store to read.")
flags.DEFINE_string("seeds", "0,1,2", "Seeds to average over.")
flags.DEFINE_string("preset", "cpu", "Preset the components were trained with.")
KINDS = ("ft", "fs", "levi_light", "levi_frozen", "a3", "small")


def main(_):
  logging.set_verbosity(logging.WARNING)
  import numpy as np
  from benchmark import metrics, setup, trainer
  from benchmark.data import Split
  from benchmark.models import params

  cfg = setup.resolve_config("synthetic_spurious", FLAGS.preset)
  splits = setup.load_splits("synthetic_spurious", cfg)
  ctx = setup.load_context("synthetic_spurious", cfg, None, FLAGS.workdir, splits=splits)
  ood = splits.ood["x_only"]
  cols = splits.info.extra["columns"]["num"]
  variants = {"as is": [], "s1=0": ["num_s1"], "s2=0": ["num_s2"],
              "s1=s2=0": ["num_s1", "num_s2"]}

  def zeroed(names):
    num = ood.large["num"].copy()
    for c in names:
      num[:, cols.index(c)] = 0.0
    return Split({"num": num}, {"num": num}, ood.label)

  print(f"OOD accuracy (%) on x_only, mean over seeds {FLAGS.seeds}")
  print(f"{'component':14s}" + "".join(f"{v:>10s}" for v in variants))
  for kind in KINDS:
    accs = {v: [] for v in variants}
    for seed in (int(s) for s in FLAGS.seeds.split(",")):
      s = ctx.spec(kind, seed)
      if not ctx.store.component_path(kind, s.key).exists():
        continue
      model, _, _ = ctx.build(s)
      params.load_params(model, ctx.component(s).params)
      for v, names in variants.items():
        p = trainer.predict(model, splits.info.task, {"o": zeroed(names)})["o"]
        accs[v].append(metrics.score(splits.info.task, p, ood.label))
    if accs["as is"]:
      print(f"{kind:14s}" + "".join(f"{np.mean(a):10.2f}" for a in accs.values()))


if __name__ == "__main__":
  app.run(main)
