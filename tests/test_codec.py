"""Payload encryption: the codec, its keys, the codec endpoint, and what really lands in history."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import urllib.error
import urllib.request
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.client import Client

from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.messages import ExportStatus
from billbridge.starter.door import export_invoice
from billbridge.starter.samples import SampleLine, build_invoice
from billbridge.workers.client import connect
from billbridge.workers.codec import (
    ENCODING,
    KEY_ID_METADATA,
    CodecKeyError,
    CodecKeyMissing,
    EncryptionCodec,
    PayloadDecryptionError,
    data_converter,
    embedded_address,
    generate_key,
    load_codec,
)
from billbridge.workers.codec_server import CodecServer
from billbridge.workers.dev_server import DevServer
from conftest import StripeAccount, workflow_show

UI_ORIGIN = "http://127.0.0.1:8233"
USAGE = [
    SampleLine("item_api_calls", "API calls", Decimal("1234567.891"), Decimal("0.00012")),
    SampleLine("item_seats", "Seats", Decimal("12"), Decimal("49.99")),
]
CLEAR = {"id": "inv_secret_42", "name": "Acme Corp", "email": "billing@acme.test"}


def keys(*texts: str) -> EncryptionCodec:
    return load_codec(
        Settings(temporal_address="temporal:7233"), {"BILLBRIDGE_CODEC_KEY": ",".join(texts)}
    )


async def test_round_trip_encrypts_everything() -> None:
    converter = data_converter(keys(generate_key()))
    payloads = await converter.encode([CLEAR, "inv_secret_42", 12.5])
    for payload in payloads:
        assert payload.metadata["encoding"] == ENCODING
        assert payload.metadata[KEY_ID_METADATA]
        assert b"inv_secret_42" not in payload.data and b"Acme" not in payload.data
        assert b"json/plain" not in payload.data  # the inner metadata is sealed too
    assert await converter.decode(payloads, [dict, str, float]) == [CLEAR, "inv_secret_42", 12.5]
    # Same clear text, fresh nonce: never the same ciphertext twice.
    again = await converter.encode([CLEAR])
    assert again[0].data != payloads[0].data


async def test_key_rotation_old_key_still_decodes() -> None:
    old, new = generate_key(), generate_key()
    before = await data_converter(keys(old)).encode([CLEAR])
    rotated = keys(new, old)
    assert await data_converter(rotated).decode(before, [dict]) == [CLEAR]
    after = await rotated.encode([Payload(data=b"x")])
    assert after[0].metadata[KEY_ID_METADATA].decode() == rotated.key_id == keys(new).key_id
    assert rotated.key_ids == [keys(new).key_id, keys(old).key_id]
    # A process still on the old key only cannot read what the new key wrote, and says so.
    with pytest.raises(PayloadDecryptionError, match=rotated.key_id):
        await keys(old).decode(after)


async def test_wrong_key_is_a_clear_error() -> None:
    sealed = await keys(generate_key()).encode([Payload(data=b"secret")])
    kid = sealed[0].metadata[KEY_ID_METADATA].decode()
    with pytest.raises(PayloadDecryptionError) as err:
        await keys(generate_key()).decode(sealed)
    message = str(err.value)
    assert f"key id {kid}, which this process does not have" in message
    assert "BILLBRIDGE_CODEC_KEY" in message


async def test_tampered_payload_fails_authentication() -> None:
    codec = keys(generate_key())
    (sealed,) = await codec.encode([Payload(data=b"secret")])
    sealed.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    with pytest.raises(PayloadDecryptionError, match="altered or truncated"):
        await codec.decode([sealed])


async def test_unencrypted_payloads_pass_through() -> None:
    # Histories recorded before encryption (tests/histories) stay readable.
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"x"')
    assert await keys(generate_key()).decode([plain]) == [plain]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("not base64 at all!", "BILLBRIDGE_CODEC_KEY is not valid base64"),
        (base64.b64encode(os.urandom(16)).decode(), "BILLBRIDGE_CODEC_KEY decodes to 16 bytes"),
        (f"{generate_key()},abc", "BILLBRIDGE_CODEC_KEY: key 2 of 2 is not valid base64"),
        (" , ", "BILLBRIDGE_CODEC_KEY"),  # only separators: no key
    ],
)
def test_malformed_key_names_the_variable(value: str, expected: str) -> None:
    with pytest.raises(CodecKeyError, match=expected) as err:
        keys(value)
    assert "os.urandom(32)" in str(err.value)  # how to make a good one


def test_key_file_variable(tmp_path: Path) -> None:
    production = Settings(temporal_address="temporal:7233", data_dir=tmp_path)
    key_file = tmp_path / "key"
    key_file.write_text(generate_key() + "\n")
    codec = load_codec(production, {"BILLBRIDGE_CODEC_KEY_FILE": str(key_file)})
    assert codec.key_id == keys(key_file.read_text().strip()).key_id
    key_file.write_text(base64.b64encode(b"short").decode())
    with pytest.raises(CodecKeyError, match="BILLBRIDGE_CODEC_KEY_FILE"):
        load_codec(production, {"BILLBRIDGE_CODEC_KEY_FILE": str(key_file)})
    with pytest.raises(CodecKeyError, match=r"BILLBRIDGE_CODEC_KEY_FILE=.*cannot be read"):
        load_codec(production, {"BILLBRIDGE_CODEC_KEY_FILE": str(tmp_path / "missing")})


def test_production_without_key_raises_codec_key_missing(tmp_path: Path) -> None:
    production = Settings(temporal_address="temporal:7233", data_dir=tmp_path)
    with pytest.raises(CodecKeyMissing) as err:
        load_codec(production, {})
    assert "BILLBRIDGE_CODEC_KEY" in str(err.value)
    assert "BILLBRIDGE_CODEC_KEY_FILE" in str(err.value)
    assert not (tmp_path / "codec.key").exists()  # never a silent dev key in production


def test_embedded_default_key_file_is_created_once(tmp_path: Path) -> None:
    embedded = Settings(temporal_address=None, data_dir=tmp_path / "data")
    first = load_codec(embedded, {})
    key_file = tmp_path / "data" / "codec.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert load_codec(embedded, {}).key_id == first.key_id
    assert [p.name for p in key_file.parent.iterdir()] == ["codec.key"]
    # local_services fills in the embedded server's address; that process keeps the dev key.
    started = replace(embedded, temporal_address="127.0.0.1:7399")
    with pytest.raises(CodecKeyMissing):
        load_codec(started, {})
    with embedded_address("127.0.0.1:7399"):
        assert load_codec(started, {}).key_id == first.key_id


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def _preflight(url: str, origin: str) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(
        url,
        method="OPTIONS",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, dict(response.headers)


async def _export(client: Client, store: Store, worker: Settings, invoice_id: str) -> Any:
    invoice = build_invoice(invoice_id, "cust_1", "USD", USAGE, memo="Thanks, Acme Corp!")
    result = await export_invoice(client, store, invoice, worker.task_queue)
    assert result.status == ExportStatus.EXPORTED, result.reason
    return result


async def test_codec_server_decodes_a_real_history_payload_for_the_ui(
    client: Client,
    store: Store,
    worker: Settings,
    stripe_account: StripeAccount,
    codec: EncryptionCodec,
) -> None:
    result = await _export(client, store, worker, "inv_codec_server")
    history = await client.get_workflow_handle("export-invoice/inv_codec_server").fetch_history()
    completed = history.events[-1].workflow_execution_completed_event_attributes
    sealed = completed.result.payloads[0]
    assert sealed.metadata["encoding"] == ENCODING
    assert result.external_id.encode() not in sealed.data
    body = json_format.MessageToJson(Payloads(payloads=[sealed])).encode()
    headers = {"Content-Type": "application/json", "X-Namespace": "default", "Origin": UI_ORIGIN}

    with CodecServer(codec, allow_origin=UI_ORIGIN) as server:
        status, cors = await asyncio.to_thread(_preflight, f"{server.url}/decode", UI_ORIGIN)
        assert status in (200, 204)
        assert cors["Access-Control-Allow-Origin"] == UI_ORIGIN
        assert "x-namespace" in cors["Access-Control-Allow-Headers"]
        assert "content-type" in cors["Access-Control-Allow-Headers"]
        assert "POST" in cors["Access-Control-Allow-Methods"]
        _, other = await asyncio.to_thread(_preflight, f"{server.url}/decode", "http://evil.test")
        assert "Access-Control-Allow-Origin" not in other

        status, answer_headers, answer = await asyncio.to_thread(
            _post, f"{server.url}/decode", body, headers
        )
        assert status == 200, answer
        assert answer_headers["Access-Control-Allow-Origin"] == UI_ORIGIN
        decoded = json_format.Parse(answer, Payloads()).payloads
        assert decoded[0].metadata["encoding"] == b"json/plain"
        value = json.loads(decoded[0].data)
        assert value["external_id"] == result.external_id and value["status"] == "exported"

        # /encode goes the other way, and the round trip is exact.
        status, _, encoded = await asyncio.to_thread(_post, f"{server.url}/encode", answer, headers)
        assert status == 200
        again = json_format.Parse(encoded, Payloads()).payloads
        assert again[0].metadata["encoding"] == ENCODING
        assert await codec.decode(list(again)) == list(decoded)

        status, _, error = await asyncio.to_thread(_post, f"{server.url}/decode", b"nope", headers)
        assert status == 400 and b"payloads" in error

    # A codec endpoint with another key answers with the clear error, not a crash.
    with CodecServer(keys(generate_key()), allow_origin=UI_ORIGIN) as stranger:
        status, _, error = await asyncio.to_thread(_post, f"{stranger.url}/decode", body, headers)
        assert status == 422 and b"which this process does not have" in error


async def test_codec_server_bearer_token(codec: EncryptionCodec) -> None:
    body = json_format.MessageToJson(Payloads(payloads=await codec.encode([Payload(data=b"x")])))
    headers = {"Content-Type": "application/json"}
    with CodecServer(codec, token="s3cret") as server:
        status, _, _ = await asyncio.to_thread(
            _post, f"{server.url}/decode", body.encode(), headers
        )
        assert status == 401
        authorized = {**headers, "Authorization": "Bearer s3cret"}
        status, _, answer = await asyncio.to_thread(
            _post, f"{server.url}/decode", body.encode(), authorized
        )
        assert status == 200 and json_format.Parse(answer, Payloads()).payloads[0].data == b"x"


PATCH_MARKER = {"markerName": "core_patch"}
# The SDK's own bookkeeping of a local activity, kept in its marker in clear JSON (the result and
# any failure go through the codec like every other payload).
LOCAL_ACTIVITY_BOOKKEEPING = {
    "seq",
    "attempt",
    "activity_id",
    "activity_type",
    "complete_time",
    "backoff",
    "original_schedule_time",
    "activation_index",
}


def _strip_search_attributes(node: Any) -> Any:
    """Search attributes are not payload data: codecs never see them (the UI filters on them).
    Nor do the SDK's patch markers, which hold only a patch id (checked below)."""
    if isinstance(node, dict):
        if node.get("markerName") == PATCH_MARKER["markerName"]:
            patch = json.loads(
                base64.b64decode(node["details"]["patch-data"]["payloads"][0]["data"])
            )
            assert set(patch) == {"id", "deprecated"}, patch  # a patch id, nothing else
            return PATCH_MARKER
        if node.get("markerName") == "core_local_activity":
            data = node["details"].pop("data")["payloads"][0]["data"]
            assert set(json.loads(base64.b64decode(data))) <= LOCAL_ACTIVITY_BOOKKEEPING
        return {
            key: _strip_search_attributes(value)
            for key, value in node.items()
            if key != "searchAttributes"
        }
    if isinstance(node, list):
        return [_strip_search_attributes(value) for value in node]
    return node


def _payloads(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        if "metadata" in node and ("data" in node or "encoding" in node.get("metadata", {})):
            return [node]
        return [found for value in node.values() for found in _payloads(value)]
    if isinstance(node, list):
        return [found for value in node for found in _payloads(value)]
    return []


async def test_history_seen_by_temporal_cli_holds_only_ciphertext(
    client: Client,
    store: Store,
    worker: Settings,
    stripe_account: StripeAccount,
    temporal_server: DevServer,
) -> None:
    invoice_id = "inv_cipher_only"
    result = await _export(client, store, worker, invoice_id)
    show = await workflow_show(temporal_server.address, f"export-invoice/{invoice_id}")
    assert show.returncode == 0, show.stderr
    history = _strip_search_attributes(json.loads(show.stdout))
    payloads = _payloads(history)
    # Input, the prepare step's result (a local activity records no input), the push step's
    # input and result, the result: all there, all sealed.
    assert len(payloads) >= 5
    clear_values = [
        invoice_id,
        "cust_1",
        stripe_account.customer_id,
        result.external_id,
        result.provider_total,
        str(result.provider_total).replace(".", ""),
    ]
    encrypted = base64.b64encode(ENCODING).decode()
    for payload in payloads:
        assert payload["metadata"]["encoding"] == encrypted, payload
        data = base64.b64decode(payload["data"])
        for value in clear_values:
            assert value.encode() not in data
    # Not anywhere in the history either (these contain characters base64 never produces).
    for value in (result.external_id, stripe_account.customer_id, "Acme Corp", "acme.test"):
        assert value not in show.stdout
    payload_text = json.dumps(payloads)
    assert invoice_id not in payload_text and "cust_1" not in payload_text

    # Without the key the result cannot be read; with the session key it can.
    stranger = await connect(temporal_server.address, codec=keys(generate_key()))
    with pytest.raises(Exception, match="which this process does not have"):
        await stranger.get_workflow_handle(f"export-invoice/{invoice_id}").result()
    done = await client.get_workflow_handle(f"export-invoice/{invoice_id}").result()
    assert done["external_id"] == result.external_id
