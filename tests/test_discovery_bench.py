"""bench/discovery.py's bank protocol: the campaign each arm runs (its tuning, its own cache) is a valid
campaign, and the table shows each winner's verdict against tuned AdamW and tuned Muon side by side."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import discovery  # noqa: E402

from evaluators import TUNING_PRESETS  # noqa: E402
from search.core import parse_campaign  # noqa: E402


def test_bank_campaign_of_each_arm_parses_with_the_chosen_tuning_and_its_own_cache():
    dicts = {arm: discovery.bank_campaign_dict(arm, 1, 900.0, tuning="budget") for arm in ("random", "bandit_llm")}
    for arm, d in dicts.items():
        c = parse_campaign(d, f"<{arm}>")
        assert c.random_seed == 1 and c.budget.wall_seconds == 900.0
        assert d["evaluator"]["wd_grid"] == TUNING_PRESETS["budget"]["wd_grid"]
        assert d["evaluator"]["lr_grid"] == TUNING_PRESETS["budget"]["lr_grid"]   # the file's grid is replaced
        assert d["evaluator"]["cache_dir"].endswith(f"bank_cache_{arm}")
    assert dicts["random"]["operators"]["llm_share"] == 0.0
    thorough = discovery.bank_campaign_dict("random", 1, 900.0)
    assert thorough["evaluator"]["wd_grid"]["values"] == [0.0, 0.001, 0.01, 0.1, 1.0]   # the file's own


def _verify(score: float, ci: list[float], verdict: str, baseline: str) -> dict:
    return {"baseline": baseline, "entries": [{"kind": "candidate", "id": 7, "search": 0.2, "validation": 0.1,
                                               "verdict": verdict, "verified_won": 1, "verified_n": 4,
                                               "estimate": {"score": score, "ci": ci, "aggregate": "iqm"}}]}


def test_bank_table_shows_both_baselines(tmp_path):
    rec = {"arm": "random", "search_seed": 0, "wall_cap_s": 900, "tuning": "budget", "budget_units": 40,
           "generations": 9, "llm_calls": 0, "meta_overfitting": [], "load_before": [3.0], "load_after": [4.0],
           "started": "2026-12-06 23:26 UTC", "verify": _verify(-0.01, [-0.2, 0.2], "indistinguishable", "adamw"),
           "verify_vs": {"muon": _verify(-0.09, [-0.3, -0.01], "worse", "muon")}}
    (tmp_path / "bank_s0.json").write_text(json.dumps(rec))
    unverified = {k: v for k, v in rec.items() if k != "verify"} | {"search_seed": 1}
    (tmp_path / "bank_s1.json").write_text(json.dumps(unverified))
    text = discovery.bank_table(tmp_path)
    head, _, row, *rest = text.splitlines()
    assert "vs tuned AdamW (95% CI)" in head and "vs tuned muon (95% CI)" in head
    assert "-0.010 [-0.200, +0.200] (iqm) | indistinguishable" in row
    assert "-0.090 [-0.300, -0.010] (iqm) | worse" in row
    assert rest == []     # a seed whose search finished but that is not verified yet has no row
    rec["verify_retuned"] = {"fine": {"adamw": _verify(-0.05, [-0.3, 0.1], "indistinguishable", "adamw"),
                                      "muon": _verify(0.02, [-0.1, 0.2], "indistinguishable", "muon"),
                                      "_timing": {"verify_s": 10.0}}}
    (tmp_path / "bank_s0.json").write_text(json.dumps(rec))
    _, _, own, fine, *rest = discovery.bank_table(tmp_path).splitlines()
    assert "| budget | budget |" in own and "-0.010 [-0.200, +0.200]" in own
    assert "| budget | fine |" in fine and "-0.050 [-0.300, +0.100]" in fine and "+0.020 [-0.100, +0.200]" in fine
    assert rest == []
