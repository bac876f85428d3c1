"""schemathesis against the served OpenAPI document, as the admin: no 5xx, and every answer
fits the document (status, content type, schema)."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

from soar.api.auth import Role
from soar.api.testing import ApiUnderTest

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
    ]
)


async def test_the_served_document_holds_for_generated_requests(
    api: ApiUnderTest, tmp_path: Path
) -> None:
    st = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert st is not None, "schemathesis is a dev dependency"
    process = await asyncio.create_subprocess_exec(
        st,
        "--config-file",
        str(Path(__file__).with_name("schemathesis.toml")),
        "run",
        f"{api.url}/api/v1/openapi.json",
        "--url",
        api.url,
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "25",
        "--seed",
        "1",
        "--workers",
        "1",
        "--exclude-path",
        "/api/v1/events",
        "--request-timeout",
        "20",
        "-H",
        f"Authorization: Bearer {api.tokens[Role.ADMIN]}",
        "--no-color",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    output, _ = await asyncio.wait_for(process.communicate(), 600)
    text = output.decode(errors="replace")
    (tmp_path.parent / "st-output.txt").write_text(text)
    assert process.returncode == 0, text[-6000:]
