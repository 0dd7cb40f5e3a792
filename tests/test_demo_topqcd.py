"""``python analysis.py`` (top/QCD workflow) on the bundled samples: every stage, the figures, the
comparison."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from tests.conftest import ROOT

FIGURES = (
    "roc",
    "score_shapes",
    "score_stacked",
    "efficiency_vs_pt",
    "efficiency_vs_sdmass",
    "rejection_vs_pt",
    "rejection_vs_sdmass",
    "mass_after_cuts",
)


@pytest.mark.slow
def test_analysis_topqcd_demo_on_the_bundled_samples(tmp_path: pathlib.Path) -> None:
    """The hybrid PFN against the logistic regression and the GBT, with intervals and a paired comparison."""
    cmd = [sys.executable, str(ROOT / "analysis.py"), "--output", str(tmp_path), "--executor", "iterative"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "results" / "summary.json").read_text())
    assert summary["reference"] == "gbt" and set(summary["others"]) == {"logistic", "gbt"}
    network = summary["from_table"]["auc"]
    assert network["low"] < network["value"] < network["high"] and network["value"] > 0.97
    # the network sees the baselines' observables and the constituents: it beats the fit to the observables
    assert network["value"] > summary["others"]["logistic"]["auc"]["value"]
    versus = summary["relative_to_reference"]["pfn_hybrid"]
    assert versus["paired"] and versus["auc_difference"]["value"] == pytest.approx(
        network["value"] - summary["others"]["gbt"]["auc"]["value"]
    )
    assert "pfn_hybrid - gbt: AUC difference" in done.stdout and "sigma, paired bootstrap" in done.stdout
    for name in FIGURES:
        assert (tmp_path / "results" / "plots" / f"{name}.png").is_file(), name
        assert (tmp_path / "results" / "plots" / f"{name}.pdf").is_file(), name
    assert "existing analysis, top_test" in done.stdout
