"""The messages of the Open Inference Protocol (V2) that are not tensors: health, readiness
and metadata (the routes are ``api.routes.v2``; the tensors, ``oip.codec``).

Their module path names them in the OpenAPI document, where a V2 ``ReadyResponse`` stands
beside the service's own.
"""

from __future__ import annotations

from pydantic import BaseModel


class LiveResponse(BaseModel):
    live: bool


class ReadyResponse(BaseModel):
    ready: bool


class ModelReadyResponse(BaseModel):
    name: str
    ready: bool


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
