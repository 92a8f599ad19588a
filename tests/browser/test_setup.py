"""The browser tests' own rules: skipped with the fix when Chromium is missing, failed under CI=true."""
from __future__ import annotations

import pytest

from .conftest import browser_missing
from .lab import find_chromium


def test_missing_browser_skips_with_the_fix(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"apt-get install chromium"):
        browser_missing("no Chromium on PATH")


@pytest.mark.parametrize("ci", ["true", "TRUE", " true "])
def test_missing_browser_fails_under_ci(monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match=r"CI=true.*apt-get install chromium"):
        browser_missing("no Chromium on PATH")


def test_chromium_is_looked_up_on_path(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_chromium() is None
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert find_chromium() == str(fake)
