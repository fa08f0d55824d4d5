"""The Open Inference Protocol (V2) with its real clients against a real server process:
Triton's ``tritonclient.http`` and the KServe SDK's ``InferenceRESTClient``."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from tritonclient.utils import InferenceServerException

from tests.api.conftest import jpeg_bytes
from tests.conftest import make_repository
from tests.integration.conftest import API_KEY, Server, start_server


def auth() -> dict[str, str]:
    # A new dict each call: tritonclient adds its own headers to the one it is given.
    return {"X-API-Key": API_KEY}


@pytest.fixture(scope="module")
def v2_server(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Iterator[Server]:
    root = make_repository(tmp_path_factory.mktemp("v2-models"))
    server = start_server(
        tmp_path_factory.mktemp("v2-server"),
        tiny_checkpoint,
        VERACITY_MODEL_REPOSITORY=str(root),
        VERACITY_DEFAULT_MODEL="tiny:1",
        VERACITY_BATCH_MAX_FILES="4",
        # Versions load on demand here; PyTorch skips each version's ONNX export.
        VERACITY_BACKEND="torch",
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(v2_server: Server) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(v2_server.base_url.removeprefix("http://")) as c:
        yield c


def images(*seeds: int) -> np.ndarray:
    return np.array([jpeg_bytes(seed=s) for s in seeds], dtype=np.object_)


def test_tritonclient_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()  # probes need no key
    assert client.is_server_ready()
    metadata = client.get_server_metadata(headers=auth())
    assert metadata["name"] == "veracity"
    assert "binary_tensor_data" in metadata["extensions"]
    model = client.get_model_metadata("tiny", headers=auth())
    assert model["name"] == "tiny"
    assert model["versions"] == ["1", "2", "broken"]
    assert model["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert {o["name"] for o in model["outputs"]} >= {"fake_prob", "real_prob", "verdict"}
    assert client.get_model_metadata("tiny", "2", headers=auth())["versions"] == ["2"]
    assert client.is_model_ready("tiny", headers=auth())
    assert not client.is_model_ready("tiny", "2", headers=auth())  # not loaded yet
    assert not client.is_model_ready("nope", headers=auth())
    with pytest.raises(InferenceServerException, match="missing API key"):
        client.get_server_metadata()


def test_tritonclient_infers_with_binary_data(client: triton.InferenceServerClient) -> None:
    data = images(1, 2, 3)
    tensor = triton.InferInput("image", [3], "BYTES")
    tensor.set_data_from_numpy(data)  # binary tensor data, no Content-Type
    result = client.infer("tiny", [tensor], request_id="req-7", headers=auth())
    response = result.get_response()
    assert response["id"] == "req-7"
    assert (response["model_name"], response["model_version"]) == ("tiny", "1")
    fake = result.as_numpy("fake_prob")
    real = result.as_numpy("real_prob")
    assert fake.shape == (3,)
    assert fake.dtype == np.float64
    np.testing.assert_allclose(fake + real, 1.0, atol=1e-12)
    verdicts = [v.decode() for v in result.as_numpy("verdict")]
    assert set(verdicts) <= {"real", "fake", "inconclusive"}
    ids = [v.decode() for v in result.as_numpy("prediction_id")]
    assert all(ids)


def test_tritonclient_json_outputs_and_a_named_version(
    client: triton.InferenceServerClient, v2_server: Server
) -> None:
    data = images(4)
    tensor = triton.InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(data)
    outputs = [
        triton.InferRequestedOutput("fake_prob", binary_data=False),
        triton.InferRequestedOutput("verdict", binary_data=False),
    ]
    result = client.infer("tiny", [tensor], model_version="2", outputs=outputs, headers=auth())
    response = result.get_response()
    assert response["model_version"] == "2"
    assert [o["name"] for o in response["outputs"]] == ["fake_prob", "verdict"]
    v2_fake = float(result.as_numpy("fake_prob")[0])
    # Agrees with POST /infer on the same bytes and version.
    rest = httpx.post(
        f"{v2_server.base_url}/infer",
        params={"model_version": "2"},
        files={"file": ("x.jpg", bytes(data[0]), "image/jpeg")},
        headers=auth(),
        timeout=30,
    ).json()
    assert rest["fake_prob"] == pytest.approx(v2_fake, abs=1e-12)


def test_tritonclient_sees_errors(client: triton.InferenceServerClient) -> None:
    tensor = triton.InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([b"not an image"], dtype=np.object_))
    with pytest.raises(InferenceServerException, match="not a readable image") as bad:
        client.infer("tiny", [tensor], headers=auth())
    assert bad.value.status() == "422"
    good = triton.InferInput("image", [1], "BYTES")
    good.set_data_from_numpy(images(5))
    with pytest.raises(InferenceServerException, match="no model named 'nope'") as missing:
        client.infer("nope", [good], headers=auth())
    assert missing.value.status() == "404"
    with pytest.raises(InferenceServerException, match="missing API key") as anonymous:
        client.infer("tiny", [good])
    assert anonymous.value.status() == "401"
    many = triton.InferInput("image", [5], "BYTES")
    many.set_data_from_numpy(images(1, 2, 3, 4, 5))
    with pytest.raises(InferenceServerException, match="at most 4") as too_many:
        client.infer("tiny", [many], headers=auth())
    assert too_many.value.status() == "413"
    assert client.is_server_ready()


def test_kserve_rest_client(v2_server: Server) -> None:
    async def run() -> None:
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
        try:
            base = v2_server.base_url
            assert await client.is_server_live(base)
            assert await client.is_server_ready(base)
            assert await client.is_model_ready(base, "tiny", headers=auth())
            encoded = base64.b64encode(jpeg_bytes(seed=6)).decode()
            request = InferRequest(
                model_name="tiny",
                infer_inputs=[
                    InferInput(name="image", shape=[1], datatype="BYTES", data=[encoded])
                ],
                request_id="kserve-1",
            )
            response = await client.infer(base, request, model_name="tiny", headers=auth())
            assert response.model_name == "tiny"
            assert response.id == "kserve-1"
            outputs = {o.name: o for o in response.outputs}
            fake = outputs["fake_prob"].data[0]
            real = outputs["real_prob"].data[0]
            assert fake + real == pytest.approx(1.0, abs=1e-12)
            assert outputs["verdict"].data[0] in ("real", "fake", "inconclusive")
            # Errors reach the client with the server's message.
            bad = InferRequest(
                model_name="tiny",
                infer_inputs=[InferInput(name="image", shape=[1], datatype="FP32", data=[1.0])],
            )
            with pytest.raises(httpx.HTTPStatusError, match="datatype 'FP32'"):
                await client.infer(base, bad, model_name="tiny", headers=auth())
        finally:
            await client.close()

    asyncio.run(run())
