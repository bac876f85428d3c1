"""`forensics.collect` from a URL and from the EDR; the store, its records, `verify`."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from forensics_test_servers import Origin
from pydantic import ValidationError
from soar_edr import edr
from soar_edr.testing import FalconTestServer
from soar_forensics import ArtifactRef, CollectRequest, forensics
from soar_forensics.__main__ import main

from soar.connectors import ActionContext, ActionFailed, Secrets

DOWNLOAD = "/real-time-response/entities/extracted-file-contents/v1"


def context(
    store_dir: Path, key: str, falcon: FalconTestServer | None = None, **settings: object
) -> ActionContext:
    values: dict[str, object] = {"store_dir": str(store_dir), **settings}
    secrets = Secrets({})
    if falcon is not None:
        values["edr_base_url"] = falcon.url
        secrets = Secrets(
            {"edr_client_id": falcon.client_id, "edr_client_secret": falcon.client_secret}
        )
    return ActionContext(key, settings=values, secrets=secrets)  # type: ignore[arg-type]


def read_text(path: str | Path) -> str:
    return Path(path).read_text()


def read_bytes(path: str | Path) -> bytes:
    return Path(path).read_bytes()


def read_json(path: str | Path) -> Any:
    return json.loads(read_text(path))


def write_json(path: str | Path, document: object) -> None:
    Path(path).write_text(json.dumps(document))


def tamper(blob: Path) -> None:
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes().replace(b"evil", b"nice"))


def every_file(root: Path) -> list[str]:
    return [p.read_text(errors="replace") for p in root.rglob("*") if p.is_file()]


def run_module(*args: str) -> tuple[int, str]:
    done = subprocess.run(  # noqa: S603 - the module's own command line
        [sys.executable, "-m", "soar_forensics", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode, done.stderr


async def collect(ctx: ActionContext, **inputs: object) -> ArtifactRef:
    spec = forensics.actions["collect"]
    output = await spec.fn(ctx, spec.input_model.model_validate(inputs))
    assert isinstance(output, ArtifactRef)
    return output


async def edr_collection(falcon: FalconTestServer, path: str) -> dict[str, object]:
    spec = edr.actions["start_forensic_collection"]
    ctx = ActionContext("run-1:grab", settings=falcon.settings, secrets=falcon.secrets)
    params = spec.input_model.model_validate({"host": "web-01", "path": path})
    return (await spec.fn(ctx, params)).model_dump(mode="json")


async def test_a_url_artifact_is_stored_by_its_sha256_with_a_record(
    origin: Origin, store_dir: Path, evil: bytes
) -> None:
    url = f"{origin.url}/files/evil.bin?token=abc"
    ref = await collect(context(store_dir, "run-1:fetch"), url=url, description="dropper")
    sha256 = hashlib.sha256(evil).hexdigest()
    assert (ref.sha256, ref.size, ref.changed) == (sha256, len(evil), True)
    assert Path(ref.path) == store_dir / "objects" / sha256[:2] / sha256
    assert read_bytes(ref.path) == evil
    record = read_json(ref.record)
    assert record["sha256"] == sha256
    assert record["size"] == len(evil)
    assert record["collector"] == {
        "action": "forensics.collect",
        "run_id": "run-1",
        "step": "fetch",
        "idempotency_key": "run-1:fetch",
    }
    assert record["source"] == {
        "kind": "url",
        "url": f"{origin.url}/files/evil.bin",  # no query: tokens live there
        "description": "dropper",
    }
    [entry] = record["custody"]
    assert entry["event"] == "collected"
    assert entry["at"] == record["collected_at"]
    assert entry["prev"] == "0" * 64


async def test_an_edr_collection_is_downloaded_and_stored(
    falcon: FalconTestServer, store_dir: Path, evil: bytes, host_path: str
) -> None:
    collection = await edr_collection(falcon, host_path)
    ref = await collect(context(store_dir, "run-1:store", falcon), edr=collection)
    assert ref.sha256 == hashlib.sha256(evil).hexdigest() == collection["sha256"]
    assert ref.source == f"edr:{collection['session_id']}/{host_path}"
    record = read_json(ref.record)
    assert record["source"]["kind"] == "edr"
    assert record["source"]["host"] == "web-01"
    assert record["source"]["base_url"] == falcon.url
    [download] = [s for s in falcon.seen if s.path == DOWNLOAD]
    assert download.query["sha256"] == ref.sha256


async def test_the_same_key_returns_the_same_record_without_downloading_again(
    origin: Origin, falcon: FalconTestServer, store_dir: Path, host_path: str
) -> None:
    ctx = context(store_dir, "run-1:fetch")
    url = f"{origin.url}/files/evil.bin"
    first = await collect(ctx, url=url)
    record = read_text(first.record)
    second = await collect(ctx, url=url)
    assert second.model_dump() == {**first.model_dump(), "changed": False}
    assert read_text(first.record) == record
    assert origin.hits["/files/evil.bin"] == 1

    collection = await edr_collection(falcon, host_path)
    edr_ctx = context(store_dir, "run-1:store", falcon)
    await collect(edr_ctx, edr=collection)
    await collect(edr_ctx, edr=collection)
    assert len([s for s in falcon.seen if s.path == DOWNLOAD]) == 1


async def test_the_same_bytes_under_another_key_extend_the_chain_of_custody(
    origin: Origin, falcon: FalconTestServer, store_dir: Path, host_path: str
) -> None:
    url = await collect(context(store_dir, "run-1:fetch"), url=f"{origin.url}/files/evil.bin")
    collection = await edr_collection(falcon, host_path)
    again = await collect(context(store_dir, "run-2:store", falcon), edr=collection)
    assert (again.sha256, again.path, again.changed) == (url.sha256, url.path, True)
    record = read_json(again.record)
    assert [e["event"] for e in record["custody"]] == ["collected", "collected again"]
    assert [e["idempotency_key"] for e in record["custody"]] == ["run-1:fetch", "run-2:store"]
    assert record["collector"]["run_id"] == "run-1"  # the first collector stays
    assert main(["verify", str(store_dir), url.sha256]) == 0


@pytest.mark.parametrize("name", ["big.bin", "chunked.bin"], ids=["content-length", "streamed"])
async def test_an_artifact_over_the_limit_is_refused(
    origin: Origin, store_dir: Path, name: str
) -> None:
    ctx = context(store_dir, "run-1:fetch", max_bytes=4096)
    with pytest.raises(ActionFailed, match="over the limit of 4096") as refused:
        await collect(ctx, url=f"{origin.url}/files/{name}")
    assert refused.value.retryable is False
    assert not list((store_dir / "tmp").iterdir())
    assert not (store_dir / "objects").exists()


async def test_an_edr_file_over_the_limit_is_refused(
    falcon: FalconTestServer, store_dir: Path, host_path: str
) -> None:
    collection = await edr_collection(falcon, host_path)
    ctx = context(store_dir, "run-1:store", falcon, max_bytes=10)
    with pytest.raises(ActionFailed, match="over the limit of 10") as refused:
        await collect(ctx, edr=collection)
    assert refused.value.retryable is False


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://example.com/x", "gopher://x/", "/etc/passwd"],
    ids=["file", "ftp", "gopher", "path"],
)
def test_only_http_and_https_urls_are_accepted(url: str) -> None:
    with pytest.raises(ValidationError, match="only http and https URLs"):
        CollectRequest.model_validate({"url": url})
    problems = forensics.actions["collect"].input_problems({"url": url})
    assert problems == [(("url",), "only http and https URLs are collected")]


def test_exactly_one_source_is_required() -> None:
    with pytest.raises(ValidationError, match="exactly one source"):
        CollectRequest.model_validate({})


@pytest.mark.parametrize(
    ("name", "retryable", "message"),
    [
        pytest.param("down.bin", True, "answered 503", id="5xx-retryable"),
        pytest.param("gone.bin", False, "answered 404", id="4xx-final"),
        pytest.param("slow.bin", True, "did not answer in time", id="timeout-retryable"),
    ],
)
async def test_url_failures(
    origin: Origin, store_dir: Path, name: str, retryable: bool, message: str
) -> None:
    ctx = context(store_dir, "run-1:fetch", request_timeout=0.2)
    with pytest.raises(ActionFailed, match=message) as failed:
        await collect(ctx, url=f"{origin.url}/files/{name}")
    assert failed.value.retryable is retryable


async def test_edr_failures_keep_their_retryability(
    falcon: FalconTestServer, store_dir: Path, host_path: str
) -> None:
    collection = await edr_collection(falcon, host_path)
    ctx = context(store_dir, "run-1:store", falcon)
    falcon.fail(times=1, status=502)
    with pytest.raises(ActionFailed, match="502") as failed:
        await collect(ctx, edr=collection)
    assert failed.value.retryable is True
    with pytest.raises(ActionFailed, match="404") as missing:
        await collect(ctx, edr={**collection, "sha256": "0" * 64})
    assert missing.value.retryable is False


async def test_verify_passes_an_intact_artifact(
    origin: Origin, store_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = await collect(context(store_dir, "run-1:fetch"), url=f"{origin.url}/files/evil.bin")
    assert main(["verify", str(store_dir), ref.sha256]) == 0
    assert capsys.readouterr().out.startswith(f"OK {ref.sha256}: {ref.size} bytes match")
    assert run_module("verify", str(store_dir), ref.sha256) == (0, "")


async def test_verify_detects_a_tampered_artifact(
    origin: Origin, store_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = await collect(context(store_dir, "run-1:fetch"), url=f"{origin.url}/files/evil.bin")
    tamper(Path(ref.path))
    assert main(["verify", str(store_dir), ref.sha256]) == 1
    err = capsys.readouterr().err
    assert f"FAILED {ref.sha256}" in err
    assert "it was altered" in err


async def test_verify_detects_an_edited_chain_of_custody(
    origin: Origin,
    falcon: FalconTestServer,
    store_dir: Path,
    host_path: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ref = await collect(context(store_dir, "run-1:fetch"), url=f"{origin.url}/files/evil.bin")
    await collect(
        context(store_dir, "run-2:store", falcon), edr=await edr_collection(falcon, host_path)
    )
    record = read_json(ref.record)
    record["custody"][0]["at"] = "2020-01-01T00:00:00+00:00"  # backdated
    write_json(ref.record, record)
    assert main(["verify", str(store_dir), ref.sha256]) == 1
    assert "custody entry 1 does not follow entry 0" in capsys.readouterr().err


def test_verify_reports_a_missing_artifact(
    store_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(store_dir), "a" * 64]) == 1
    assert "no record" in capsys.readouterr().err
    assert main(["verify", str(store_dir), "not-a-hash"]) == 1


async def test_the_edr_secret_shows_nowhere(
    origin: Origin,
    falcon: FalconTestServer,
    store_dir: Path,
    host_path: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    secret = falcon.client_secret
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    collection = await edr_collection(falcon, host_path)
    ctx = context(store_dir, "run-1:store", falcon)
    texts.append((await collect(ctx, edr=collection)).model_dump_json())
    for status in (500, 401, 403):
        falcon.fail(times=2, status=status)
        falcon.expire_tokens()
        try:
            await collect(context(store_dir, f"run-{status}:store", falcon), edr=collection)
        except ActionFailed as exc:
            texts += [str(exc), repr(exc), repr(exc.__cause__), repr(exc.__context__)]
    main(["verify", str(store_dir), str(collection["sha256"])])
    captured = capsys.readouterr()
    texts += [captured.out, captured.err, caplog.text]
    texts += [r.getMessage() for r in caplog.records]
    texts += every_file(store_dir)
    assert texts
    assert not [t for t in texts if secret in t]


async def test_a_host_collection_stores_each_file_and_a_manifest(
    falcon: FalconTestServer, store_dir: Path, host_path: str, evil: bytes
) -> None:
    profiles = {"triage": [host_path, r"C:\Windows\missing.evtx"]}
    ctx = context(store_dir, "run-1:sweep", falcon, profiles=profiles)
    ref = await collect(ctx, host="web-01", profile="triage")
    assert ref.source == "host:web-01/triage"
    kept, missing = ref.files
    assert (kept.path, kept.sha256, kept.size) == (
        host_path,
        hashlib.sha256(evil).hexdigest(),
        len(evil),
    )
    assert read_bytes(str(kept.stored)) == evil
    assert missing.sha256 is None
    assert "not found" in str(missing.error)
    manifest = read_json(str(ref.path))
    assert manifest["format"] == "soar-collection/1"
    assert manifest["device_id"] == falcon.host("web-01").device_id
    assert [f["path"] for f in manifest["files"]] == [host_path, r"C:\Windows\missing.evtx"]
    record = read_json(str(ref.record))
    assert record["source"]["kind"] == "edr-host"
    assert record["source"]["profile"] == "triage"
    assert main(["verify", str(store_dir), ref.sha256, str(kept.sha256)]) == 0

    again = await collect(ctx, host="web-01", profile="triage")
    assert again.model_dump() == {**ref.model_dump(), "changed": False}
    assert len([s for s in falcon.seen if s.path == DOWNLOAD]) == 1
    assert falcon.effects[f"get:{falcon.host('web-01').device_id}:{host_path}"] == 1


async def test_a_host_collection_with_no_file_found_fails(
    falcon: FalconTestServer, store_dir: Path
) -> None:
    ctx = context(store_dir, "run-1:sweep", falcon, profiles={"logs": [r"C:\none.evtx"]})
    with pytest.raises(ActionFailed, match="no file of profile 'logs' was collected") as failed:
        await collect(ctx, host="web-01", profile="logs")
    assert failed.value.retryable is False


async def test_an_unknown_profile_is_a_final_failure(
    falcon: FalconTestServer, store_dir: Path
) -> None:
    with pytest.raises(ActionFailed, match="no collection profile 'deep'") as failed:
        await collect(context(store_dir, "run-1:sweep", falcon), host="web-01", profile="deep")
    assert failed.value.retryable is False


async def test_a_host_collection_retries_when_the_edr_is_down(
    falcon: FalconTestServer, store_dir: Path, host_path: str
) -> None:
    ctx = context(store_dir, "run-1:sweep", falcon, profiles={"triage": [host_path]})
    falcon.fail(times=1, status=503)
    with pytest.raises(ActionFailed, match="503") as failed:
        await collect(ctx, host="web-01")
    assert failed.value.retryable is True
    assert (await collect(ctx, host="web-01")).files[0].sha256 is not None


async def test_a_retried_host_collection_downloads_no_file_twice(
    falcon: FalconTestServer, store_dir: Path, host_path: str
) -> None:
    other = "C:\\Windows\\other.evtx"
    falcon.host("web-01").files[other] = b"other log"
    ctx = context(store_dir, "run-1:sweep", falcon, profiles={"triage": [host_path, other]})
    falcon.fail(times=1, status=502, path=DOWNLOAD, after=1)
    with pytest.raises(ActionFailed, match="502") as failed:  # the second file's download fails
        await collect(ctx, host="web-01")
    assert failed.value.retryable is True
    falcon.fail(times=0)
    ref = await collect(ctx, host="web-01")
    assert [f.path for f in ref.files if f.sha256] == [host_path, other]
    downloads = len([s for s in falcon.seen if s.path == DOWNLOAD])
    assert downloads == 3  # the first file once, the second twice (failed, then done)
    again = await collect(ctx, host="web-01")
    assert again.files == ref.files
    assert len([s for s in falcon.seen if s.path == DOWNLOAD]) == downloads


async def test_redirects_are_followed_and_each_target_checked(
    origin: Origin, store_dir: Path, evil: bytes
) -> None:
    moved = await collect(context(store_dir, "run-1:a"), url=f"{origin.url}/files/moved.bin")
    assert moved.sha256 == hashlib.sha256(evil).hexdigest()
    with pytest.raises(ActionFailed, match="only http and https") as away:
        await collect(context(store_dir, "run-1:b"), url=f"{origin.url}/files/away.bin")
    assert away.value.retryable is False
    with pytest.raises(ActionFailed, match="redirects more than 5 times"):
        await collect(context(store_dir, "run-1:c"), url=f"{origin.url}/files/loop.bin")
    assert origin.hits["/files/loop.bin"] == 6


async def test_url_hosts_restricts_where_urls_may_point(origin: Origin, store_dir: Path) -> None:
    ctx = context(store_dir, "run-1:a", url_hosts=["evidence.example.org"])
    with pytest.raises(
        ActionFailed, match=r"127\.0\.0\.1 is not in settings\.url_hosts"
    ) as refused:
        await collect(ctx, url=f"{origin.url}/files/evil.bin")
    assert refused.value.retryable is False
    assert not origin.hits
    allowed = context(store_dir, "run-1:b", url_hosts=["127.0.0.1"])
    assert (await collect(allowed, url=f"{origin.url}/files/evil.bin")).size > 0


async def test_a_rate_limited_edr_download_is_waited_out(
    falcon: FalconTestServer, store_dir: Path, host_path: str
) -> None:
    collection = await edr_collection(falcon, host_path)
    falcon.rate_limit(times=1, retry_after=0.05)
    ref = await collect(context(store_dir, "run-1:store", falcon), edr=collection)
    assert ref.sha256 == collection["sha256"]
    falcon.rate_limit(times=1, retry_after=3600)
    with pytest.raises(ActionFailed, match="rate limited") as limited:
        await collect(context(store_dir, "run-2:store", falcon), edr=collection)
    assert limited.value.retryable is True
