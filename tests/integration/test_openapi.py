"""`/openapi.json` is a valid OpenAPI 3.1 document naming every HTTP route the node serves,
and `/docs` renders it from the node alone (nothing fetched from elsewhere)."""

from __future__ import annotations

import re

import httpx
from openapi_spec_validator import validate
from starlette.routing import Route

from rtt.api.schemas.braincloud import S2SRequest


async def _get(server, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
        return await http.get(path)


async def test_the_document_is_valid_and_describes_every_route(server):
    r = await _get(server, "/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    document = r.json()
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema
    assert document["openapi"] == "3.1.0"
    served = {
        (route.path, method.lower())
        for route in server.app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    described = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert served == described


async def test_request_schemas_are_the_models_the_doors_validate_with(server):
    document = (await _get(server, "/openapi.json")).json()
    schemas = document["components"]["schemas"]
    stateless = S2SRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    assert schemas["S2SRequest"] == stateless
    body = document["paths"]["/s2sdispatcher"]["post"]["requestBody"]["content"]
    refs = {s["$ref"] for s in body["application/json"]["schema"]["anyOf"]}
    assert refs == {"#/components/schemas/S2SRequest", "#/components/schemas/S2SPacket"}
    form = document["paths"]["/message/system/publish.json"]["post"]["requestBody"]["content"]
    assert form["application/x-www-form-urlencoded"]["schema"] == {
        "$ref": "#/components/schemas/PublishForm"
    }
    # a refusal the model makes is the one the registry always made (400/40001, its words)
    credentials = {"appId": "demo", "serverName": "backend", "serverSecret": "server-secret"}
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
        r = await http.post("/s2sdispatcher", json={**credentials, "service": 5, "operation": "X"})
    assert r.status_code == 400
    assert r.json()["reason_code"] == 40001
    assert r.json()["status_message"] == "unknown service/operation 5/X"


async def test_docs_page_renders_the_document_with_nothing_from_elsewhere(server):
    r = await _get(server, "/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert 'fetch("openapi.json")' in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "a remote asset"
    assert "<script src" not in page and "<link" not in page
