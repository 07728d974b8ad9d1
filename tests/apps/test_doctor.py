"""`vreason doctor`: versions against the declared ranges, registrations, and the self-test; exit code."""

from __future__ import annotations

from vreason_hooks import transformers_seam
from vreason_hooks.apps import doctor
from vreason_hooks.apps.cli import main


def test_doctor_passes_on_this_installation(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for package in ("python", "torch", "transformers", "lmms-eval", "filelock"):
        assert f"ok    {package} " in out
    assert "inside >=5." in out  # transformers against its declared range
    assert "qwen2_5_vl" in out and "vreason_qwen2_5_vl" in out
    assert "bit-identical" in out and "all checks passed" in out


def test_doctor_fails_outside_the_supported_range(monkeypatch, capsys):
    monkeypatch.setattr(transformers_seam, "supported_ranges", lambda: {"transformers": ">=9.0,<9.1"})
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  transformers" in out and "OUTSIDE >=9.0,<9.1" in out and "1 check(s) FAILED" in out


def test_self_test_reports_a_controller_that_changes_output_when_off(monkeypatch):
    import torch

    real_equal = torch.equal
    monkeypatch.setattr(torch, "equal", lambda a, b: False if a.dtype == torch.long else real_equal(a, b))
    checks = {c.name: c for c in doctor.self_test()}
    assert not checks["objective=none == plain generate"].ok
