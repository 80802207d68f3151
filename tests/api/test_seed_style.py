"""Code written against acd_cli 0.3.1 uses the request object and the OAuth handler directly."""

from __future__ import annotations

import json
import time

import requests

from acdfuse.api.backoff_req import BackOffRequest
from acdfuse.api.client import ACDClient
from acdfuse.api.common import OK_CODES


def test_raw_verbs_return_responses(client: ACDClient) -> None:
    bo = client.BOReq
    assert isinstance(bo, BackOffRequest)
    r = bo.get(client.metadata_url + "account/info")
    assert isinstance(r, requests.Response) and r.status_code in OK_CODES
    r = bo.post(
        client.metadata_url + "nodes", acc_codes=[201], data=json.dumps({"kind": "FOLDER", "name": "raw"})
    )
    assert r.status_code == 201
    folder = r.json()
    r = bo.patch(client.metadata_url + "nodes/" + folder["id"], data=json.dumps({"description": "d"}))
    assert r.json()["description"] == "d"
    r = bo.put(client.metadata_url + "trash/" + folder["id"])
    assert r.json()["status"] == "TRASH"
    owner = client.get_owner_id()
    r = bo.put(
        client.metadata_url + f"nodes/{folder['id']}/properties/{owner}/k",
        acc_codes=[201],
        data=json.dumps({"value": "v"}),
    )
    assert r.status_code == 201
    r = bo.delete(client.metadata_url + f"nodes/{folder['id']}/properties/{owner}/k", acc_codes=[204])
    assert r.status_code == 204
    # an error answer is returned, not raised, as in the seed
    r = bo.get(client.metadata_url + "nodes/AAAAAAAAAAAAAAAAAAAAAA")
    assert r.status_code == 404
    assert bo.paginated_get(client.metadata_url + "trash")[0]["id"] == folder["id"]


def test_handler_token_helpers(client: ACDClient) -> None:
    h = client.handler
    assert h.get_auth_token().startswith("Bearer ")
    assert h.get_auth_token(reload=False) == h.get_auth_token()
    lifetime = h.oauth_data[h.KEYS.EXP_IN]
    h.treat_auth_token(1000.0)
    assert h.exp_time == 1000.0 + lifetime - 120  # the usual two minutes early for hour-long tokens
    h.oauth_data[h.KEYS.EXP_TIME] = time.time() + 3600
    h.load_oauth_data()  # reads the file again (the server's exp_time)
    assert h.exp_time == json.loads(open(h.oauth_data_path).read())["exp_time"]
    h.check_oauth_file_exists()  # present: nothing to do
