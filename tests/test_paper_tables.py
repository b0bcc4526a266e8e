"""The harness's `ood` aggregate is the unweighted mean of the per-group
scores. Checked on the paper's own numbers: Table 1's MovieLens OOD column
follows from Tables 9-10 (twelve genres) this way."""
import numpy as np
import pytest

from benchmark import tables

# Paper Tables 9 and 10 (OOD RMSE per genre), then Table 1's "OOD (12 genres)".
GENRES = ["Adventure", "Sci-Fi", "War", "Crime", "Children's", "Horror",
          "Mystery", "Musical", "Animation", "Western", "Film-Noir", "Documentary"]
PAPER = {
    "ft": ([1.251, 1.314, 1.153, 1.341, 1.262, 1.355, 1.268, 1.265, 1.262, 1.216, 1.125, 1.404], 1.268),
    "ht": ([1.283, 1.352, 1.276, 1.405, 1.298, 1.403, 1.245, 1.315, 1.327, 1.194, 1.122, 1.467], 1.297),
    "lp": ([1.233, 1.231, 1.166, 1.402, 1.195, 1.398, 1.213, 1.158, 1.166, 1.100, 1.062, 1.288], 1.218),
    "fs": ([1.350, 1.296, 1.246, 1.367, 1.279, 1.399, 1.303, 1.259, 1.262, 1.187, 1.160, 1.388], 1.291),
    "lp_ft": ([1.335, 1.352, 1.294, 1.340, 1.368, 1.378, 1.428, 1.356, 1.396, 1.327, 1.260, 1.455], 1.357),
    "ft_robust": ([1.122, 1.175, 1.066, 1.203, 1.103, 1.257, 1.125, 1.097, 1.092, 1.048, 1.017, 1.221], 1.127),
    "ft_fs": ([1.156, 1.196, 1.076, 1.235, 1.142, 1.259, 1.167, 1.143, 1.139, 1.091, 1.033, 1.277], 1.159),
    "ft_zeroshot": ([1.227, 1.338, 1.134, 1.343, 1.239, 1.363, 1.254, 1.235, 1.246, 1.124, 1.143, 1.396], 1.253),
    "levi": ([1.036, 1.138, 1.059, 1.178, 1.047, 1.105, 0.973, 1.077, 1.074, 0.949, 0.878, 1.267], 1.065),
}

PAPER_INCONSISTENT = {"ht": 1.307}
# Groups of unequal size (as the genres are: hundreds to thousands of
# ratings), so that an example-weighted mean differs from the unweighted one
# by more than the paper's rounding for every row: the test can tell them apart.
SIZES = [1500, 900, 700, 600, 500, 400, 300, 250, 200, 150, 100, 60]


@pytest.mark.parametrize("method", sorted(PAPER))
def test_table1_movielens_ood_is_unweighted_mean_of_tables_9_10(method):
  per_genre, table1 = PAPER[method]
  # One record per method carrying the paper's per-genre means as its scores;
  # the table's `ood` row must reproduce Table 1 up to the paper's rounding.
  rec = {"dataset": "movielens_genre", "method": method, "seed": 0, "status": "ok",
         "metric": "rmse",
         "scores": {"test_id": 1.0, **{f"ood/{g}": v for g, v in zip(GENRES, per_genre)}},
         "n_examples": {"test_id": 1, **{f"ood/{g}": n for g, n in zip(GENRES, SIZES)}}}
  frame = tables.dataset_frame([rec])
  ood = frame[frame["split"] == "ood"]["mean"].item()
  assert frame[frame["split"] == "ood"]["n_examples"].item() == sum(SIZES)
  weighted = float(np.average(per_genre, weights=SIZES))
  assert abs(weighted - (PAPER_INCONSISTENT.get(method) or table1)) > 0.0006
  if method in PAPER_INCONSISTENT:
    # The paper's HT row does not follow from its own Tables 9-10 (the mean of
    # the twelve genres is 1.307, Table 1 says 1.297); recorded in
    # docs/fidelity.md. Every other row does.
    assert abs(ood - PAPER_INCONSISTENT[method]) <= 0.0006
    return
  assert abs(ood - table1) <= 0.0006, (ood, table1)
  # ... and an example-weighted mean would not (asserted above).
  assert np.isclose(ood, np.mean(per_genre))
  sizes = np.array(SIZES)
  weighted = frame[frame["split"] == "ood:weighted"]["mean"].item()
  assert np.isclose(weighted, np.sqrt(np.sum(sizes * np.square(per_genre)) / sizes.sum()))
  assert abs(weighted - ood) > 1e-5
