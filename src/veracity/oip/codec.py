"""Reading V2 inference requests and writing V2 responses, with the binary tensor extension.

A request is a JSON object, optionally followed by binary tensor data: then the
``Inference-Header-Content-Length`` header gives the JSON's length, and each binary input
names its share with ``parameters.binary_data_size``. BYTES elements in binary form are each
a 4-byte little-endian length and the bytes; in JSON, veracity reads each element as the
base64 text of an image file (JSON strings cannot carry arbitrary bytes).

veracity's models take one input, ``image``: BYTES, shape ``[N]`` (or ``[N, 1]``), each
element an encoded image file. Everything a client controls is checked before anything is
decoded: the header length against the body, the shape against the elements, each element
and the count against the limits, the binary sizes against what is there. Problems raise
BadRequestError or PayloadTooLargeError with a message that says what to fix.

This is written here rather than taken from a library: tritonclient and the KServe SDK
implement the client side, and KServe's server-side codec comes with its whole model
server; the wire format itself is small.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import reprlib
import struct
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from veracity.errors import BadRequestError, PayloadTooLargeError

INPUT_NAME = "image"
HEADER_LENGTH = "inference-header-content-length"
MAX_HEADER_BYTES = 1 << 20  # the JSON part of a binary request carries no data
MAX_ID_LENGTH = 256
# A V2 request nests about five deep; anything far deeper is an attack on the parser (the
# C scanner recurses per level) or on whatever walks the document afterwards.
MAX_JSON_DEPTH = 32
_HEADER_DIGITS = re.compile(r"[0-9]{1,12}")  # str.isdigit() accepts "²", which int() refuses
# Client values quoted back in error messages: bounded in length, items and nesting.
_QUOTE = reprlib.Repr()
_QUOTE.maxlevel, _QUOTE.maxlist, _QUOTE.maxdict = 2, 4, 4
_QUOTE.maxstring, _QUOTE.maxlong, _QUOTE.maxother = 60, 40, 60

OutputType = Literal["FP64", "BYTES"]
# The outputs every model answers: name -> datatype.
OUTPUTS: dict[str, OutputType] = {
    "fake_prob": "FP64",
    "real_prob": "FP64",
    "verdict": "BYTES",
    "label": "BYTES",
    "prediction_id": "BYTES",
}


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    images: list[bytes]
    outputs: list[RequestedOutput]


@dataclass(frozen=True)
class Limits:
    max_items: int
    max_item_bytes: int


def _quote(value: object) -> str:
    """A client's value for an error message: short and cheap, whatever its size or shape."""
    return _QUOTE.repr(value)


def _depth(document: object) -> int:
    """How deeply ``document`` nests, without recursing (a deep one is what is refused)."""
    deepest, stack = 0, [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            deepest = max(deepest, depth)
            if depth <= MAX_JSON_DEPTH:
                stack.extend((item, depth + 1) for item in value)
    return deepest


def _load_json(head: bytes) -> object:
    try:
        document = json.loads(head)
    except RecursionError as e:
        raise BadRequestError(
            f"the request's JSON nests too deeply; at most {MAX_JSON_DEPTH} levels are accepted"
        ) from e
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequestError(f"the request's JSON is malformed: {e}") from e
    if _depth(document) > MAX_JSON_DEPTH:
        raise BadRequestError(
            f"the request's JSON nests too deeply; at most {MAX_JSON_DEPTH} levels are accepted"
        )
    return document


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequestError(f"{what} must be a JSON object")
    return value


def _flag(parameters: dict[str, Any], name: str, what: str) -> bool | None:
    value = parameters.get(name)
    if value is not None and not isinstance(value, bool):
        raise BadRequestError(f"{what}.parameters.{name} must be true or false")
    return value


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    if not _HEADER_DIGITS.fullmatch(header_length):
        raise BadRequestError(
            "Inference-Header-Content-Length must be a whole number of bytes, in ASCII digits"
        )
    length = int(header_length)
    if length == 0 or length > len(body):
        raise BadRequestError(
            f"Inference-Header-Content-Length is {length} but the body has {len(body)} "
            "bytes; it must be the length of the JSON part, which comes first"
        )
    if length > MAX_HEADER_BYTES:
        raise BadRequestError(
            f"the JSON part is {length} bytes; at most {MAX_HEADER_BYTES} are accepted when "
            "tensor data is sent in binary"
        )
    return body[:length], body[length:]


def _shape(value: object, limits: Limits) -> int:
    """The number of images a shape holds: [N] or [N, 1], 1 <= N <= max_items."""
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in value)
    ):
        raise BadRequestError("input 'image' needs a shape: a list of whole numbers, e.g. [1]")
    if len(value) > 2 or (len(value) == 2 and value[1] != 1):
        raise BadRequestError(
            f"input 'image' has shape {_quote(value)}; it must be [N] or [N, 1], one encoded "
            "image file per element"
        )
    count: int = value[0]
    if count < 1:
        raise BadRequestError(f"input 'image' has shape {value}; send at least one image")
    if count > limits.max_items:
        raise PayloadTooLargeError(
            f"input 'image' holds {_quote(count)} images; at most {limits.max_items} are judged in "
            "one request (VERACITY_BATCH_MAX_FILES)"
        )
    return count


def _binary_elements(data: bytes, count: int) -> list[bytes]:
    """BYTES elements in the binary extension's form: 4-byte LE length, then the bytes."""
    elements, offset = [], 0
    for index in range(count):
        if offset + 4 > len(data):
            raise BadRequestError(
                f"the binary data of input 'image' ends before element {index}'s length; "
                "each BYTES element is a 4-byte little-endian length followed by the bytes"
            )
        (size,) = struct.unpack_from("<I", data, offset)
        offset += 4
        if offset + size > len(data):
            raise BadRequestError(
                f"element {index} of input 'image' declares {size} bytes but only "
                f"{len(data) - offset} remain in its binary data"
            )
        elements.append(data[offset : offset + size])
        offset += size
    if offset != len(data):
        raise BadRequestError(
            f"input 'image' has {len(data) - offset} bytes of binary data beyond its "
            f"{count} elements; its shape and binary_data_size must agree"
        )
    return elements


def _json_elements(data: object, count: int) -> list[bytes]:
    flat = data
    if isinstance(data, list) and data and all(isinstance(row, list) for row in data):
        flat = [item for row in data for item in row]  # [N, 1] sent as nested lists
    if not isinstance(flat, list) or not all(isinstance(item, str) for item in flat):
        raise BadRequestError(
            "input 'image' data must be a list of base64 strings (the encoded image files), "
            "or send the files as binary tensor data"
        )
    if len(flat) != count:
        raise BadRequestError(f"input 'image' has {len(flat)} elements but its shape says {count}")
    images = []
    for index, text in enumerate(flat):
        try:
            images.append(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError) as e:
            raise BadRequestError(
                f"element {index} of input 'image' is not base64 ({e}); in JSON, each "
                "element is the base64 text of an image file"
            ) from e
    return images


def parse_request(body: bytes, header_length: str | None, limits: Limits) -> InferRequest:
    """The images and requested outputs of a V2 inference request.

    Raises:
        BadRequestError: malformed JSON, header length, shape, datatype, data or outputs.
        PayloadTooLargeError: too many images, or one larger than the upload limit.
    """
    head, binary = _split_body(body, header_length)
    request = _object(_load_json(head), "the request")
    request_id = request.get("id")
    if request_id is not None and (
        not isinstance(request_id, str) or len(request_id) > MAX_ID_LENGTH
    ):
        raise BadRequestError(f"id must be a string of at most {MAX_ID_LENGTH} characters")
    parameters = _object(request.get("parameters", {}), "parameters")
    binary_default = bool(_flag(parameters, "binary_data_output", "the request"))
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1:
        count = len(inputs) if isinstance(inputs, list) else 0
        raise BadRequestError(
            f"the request has {count} inputs; veracity's models take exactly one, "
            f"'{INPUT_NAME}' (BYTES: encoded image files)"
        )
    tensor = _object(inputs[0], "inputs[0]")
    if tensor.get("name") != INPUT_NAME:
        raise BadRequestError(
            f"input {_quote(tensor.get('name'))} is not an input of this model; name it "
            f"'{INPUT_NAME}'"
        )
    if tensor.get("datatype") != "BYTES":
        raise BadRequestError(
            f"input 'image' has datatype {_quote(tensor.get('datatype'))}; it must be BYTES "
            "(encoded image files, not decoded pixels)"
        )
    count = _shape(tensor.get("shape"), limits)
    tensor_parameters = _object(tensor.get("parameters", {}), "inputs[0].parameters")
    size = tensor_parameters.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BadRequestError("binary_data_size must be a whole number of bytes")
        if "data" in tensor:
            raise BadRequestError("input 'image' has both data and binary_data_size; send one")
        if size != len(binary):
            raise BadRequestError(
                f"input 'image' declares binary_data_size {_quote(size)} but {len(binary)} bytes "
                "follow the JSON part"
            )
        images = _binary_elements(binary, count)
    else:
        if binary:
            raise BadRequestError(
                f"{len(binary)} bytes follow the JSON part but no input declares binary_data_size"
            )
        if "data" not in tensor:
            raise BadRequestError("input 'image' has no data and no binary_data_size")
        images = _json_elements(tensor["data"], count)
    for index, image in enumerate(images):
        if len(image) > limits.max_item_bytes:
            raise PayloadTooLargeError(
                f"element {index} of input 'image' is {len(image)} bytes, above the "
                f"{limits.max_item_bytes / 2**20:g} MB upload limit; send a smaller image"
            )
        if not image:
            raise BadRequestError(f"element {index} of input 'image' is empty")
    return InferRequest(request_id, images, _requested_outputs(request, binary_default))


def _requested_outputs(request: dict[str, Any], binary_default: bool) -> list[RequestedOutput]:
    wanted = request.get("outputs")
    if wanted is None:
        return [RequestedOutput(name, binary_default) for name in OUTPUTS]
    if not isinstance(wanted, list) or not wanted:
        raise BadRequestError("outputs must be a list of {name, parameters} objects")
    outputs: list[RequestedOutput] = []
    for index, item in enumerate(wanted):
        output = _object(item, f"outputs[{index}]")
        name = output.get("name")
        if not isinstance(name, str) or name not in OUTPUTS:
            raise BadRequestError(
                f"output {_quote(name)} is not an output of this model; choose from "
                f"{', '.join(OUTPUTS)}"
            )
        if any(o.name == name for o in outputs):
            raise BadRequestError(f"output {name!r} is requested twice")
        flag = _flag(_object(output.get("parameters", {}), "parameters"), "binary_data", name)
        outputs.append(RequestedOutput(name, binary_default if flag is None else flag))
    return outputs


def _binary(datatype: OutputType, values: list[Any]) -> bytes:
    if datatype == "FP64":
        return np.asarray(values, dtype="<f8").tobytes()
    encoded = [str(v).encode() for v in values]
    return b"".join(struct.pack("<I", len(e)) + e for e in encoded)


def encode_response(
    *,
    model_name: str,
    model_version: str,
    request_id: str | None,
    values: dict[str, list[Any]],
    outputs: list[RequestedOutput],
    parameters: dict[str, str],
) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers (binary outputs follow the JSON part)."""
    tensors, blobs = [], []
    for output in outputs:
        datatype = OUTPUTS[output.name]
        data = values[output.name]
        tensor: dict[str, Any] = {"name": output.name, "datatype": datatype, "shape": [len(data)]}
        if output.binary:
            blob = _binary(datatype, data)
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = data
        tensors.append(tensor)
    document: dict[str, Any] = {
        "model_name": model_name,
        "model_version": model_version,
        "outputs": tensors,
        "parameters": parameters,
    }
    if request_id is not None:
        document["id"] = request_id
    head = json.dumps(document).encode()
    if not blobs:
        return head, {"content-type": "application/json"}
    return head + b"".join(blobs), {
        "content-type": "application/octet-stream",
        HEADER_LENGTH: str(len(head)),
    }
