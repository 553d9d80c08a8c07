"""The face's settings: a backend URL it can actually speak to, or a clear refusal."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from roundhouse.bindery.face.settings import FaceSettings


@pytest.mark.parametrize("url", ["https://127.0.0.1:3000", "ftp://x", "127.0.0.1:3000", ""])
def test_a_backend_url_that_is_not_plain_http_is_refused(monkeypatch, url):
    monkeypatch.setenv("BINDERY_URL", url)
    with pytest.raises(ValidationError, match="BINDERY_URL must start with http://"):
        FaceSettings()


def test_a_plain_http_url_is_kept_without_its_trailing_slash(monkeypatch):
    monkeypatch.setenv("BINDERY_URL", "http://127.0.0.1:3999/")
    assert FaceSettings().bindery_url == "http://127.0.0.1:3999"
