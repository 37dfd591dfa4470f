"""The command line: ``qa ask --json`` prints the same JSON contract as ``/api/ask``."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from qa.cli import main
from qa.config import Settings
from web.app import create_app

pytestmark = pytest.mark.usefixtures("no_env")


@pytest.mark.parametrize(
    "question",
    [
        "How many US-funded enterprises had Chongqing approved by the end of 2013?",
        "Who won the 2022 World Cup?",  # no answer: the refusal travels the same way
    ],
)
def test_cli_json_equals_the_api_response(
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    question: str,
) -> None:
    monkeypatch.setenv("QA_ANSWER_THRESHOLD", str(settings.answer_threshold))
    with TestClient(create_app(settings)) as client:
        api = client.post("/api/ask", json={"question": question, "k": 4}).json()
    code = main(
        [
            "ask",
            question,
            "--k",
            "4",
            "--json",
            "--seeds",
            str(settings.seeds_dir),
            "--index",
            str(settings.index_dir),
            "--model",
            "fake",
        ]
    )
    assert code == 0
    cli = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for timing in ("took_ms", "timings"):
        api.pop(timing)
        cli.pop(timing)
    assert cli == api
    assert api["passages"]
