"""The seed's documented names, signatures and constants (acd_cli 0.3.1's acdcli.api) exist in acdfuse.api.

A signature matches when the seed's parameters come first with the same names, kinds and defaults;
extra parameters are allowed only as keyword-only ones with defaults (Contract 3 extras).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
import requests

import acdfuse.api
from acdfuse.api import account, backoff_req, client, common, content, metadata, oauth, trash


def _expected(spec: str) -> inspect.Signature:
    scope: dict[str, Any] = {}
    exec(f"def f{spec}: pass", scope)
    return inspect.signature(scope["f"])


def assert_compatible(func: Callable[..., Any], spec: str) -> None:
    want = list(_expected(spec).parameters.values())
    have = list(inspect.signature(func).parameters.values())
    assert [p.name for p in have[: len(want)]] == [p.name for p in want], f"{func.__qualname__}{spec}"
    for w, h in zip(want, have, strict=False):
        assert h.kind == w.kind, f"{func.__qualname__}: {h.name} is {h.kind}, seed has {w.kind}"
        assert h.default == w.default, f"{func.__qualname__}: default of {h.name}"
    for extra in have[len(want) :]:
        assert extra.kind is inspect.Parameter.KEYWORD_ONLY, f"{func.__qualname__}: extra {extra.name}"
        assert extra.default is not inspect.Parameter.empty, (
            f"{func.__qualname__}: {extra.name} needs a default"
        )


# (object, seed signature) straight from the seed text
SEED_SIGNATURES: list[tuple[Callable[..., Any], str]] = [
    (backoff_req.BackOffRequest.__init__, "(self, auth_callback)"),
    (client.ACDClient.__init__, "(self, path='')"),
    (common.RequestError.__init__, "(self, status_code, msg)"),
    (content.ContentMixin.clear_file, "(self, node_id)"),
    (content.ContentMixin.download_chunk, "(self, node_id, offset, length, **kwargs)"),
    (content.ContentMixin.download_file, "(self, node_id, basename, dirname=None, **kwargs)"),
    (content.ContentMixin.download_thumbnail, "(self, node_id, file_name, max_dim=128)"),
    (
        content.ContentMixin.overwrite_file,
        "(self, node_id, file_name, read_callbacks=None, deduplication=False)",
    ),
    (content.ContentMixin.overwrite_stream, "(self, stream, node_id, read_callbacks=None)"),
    (content.ContentMixin.response_chunk, "(self, node_id, offset, length, **kwargs)"),
    (metadata.MetadataMixin.add_child, "(self, parent_id, child_id)"),
    (metadata.MetadataMixin.add_property, "(self, node_id, owner_id, key, value)"),
    (metadata.MetadataMixin.delete_properties, "(self, node_id, owner_id)"),
    (metadata.MetadataMixin.delete_property, "(self, node_id, owner_id, key)"),
    (metadata.MetadataMixin.get_changes, "(self, checkpoint='', include_purged=False)"),
    (metadata.MetadataMixin.get_owner_id, "(self)"),
    (metadata.MetadataMixin.list_properties, "(self, node_id, owner_id)"),
    (oauth.OAuthHandler.__init__, "(self, path)"),
    (oauth.OAuthHandler.check_oauth_file_exists, "(self)"),
    (oauth.OAuthHandler.get_access_token_info, "(self)"),
    (oauth.OAuthHandler.get_auth_token, "(self, reload=True)"),
    (oauth.OAuthHandler.load_oauth_data, "(self)"),
    (oauth.OAuthHandler.treat_auth_token, "(self, time_)"),
    (oauth.AppspotOAuthHandler.__init__, "(self, path)"),
    (oauth.LocalOAuthHandler.__init__, "(self, path)"),
]

# named in issue 3 (acd_cli 0.3.1 signatures; the seed lists them without docstrings)
ISSUE_SIGNATURES: list[tuple[Callable[..., Any], str]] = [
    (account.AccountMixin.get_account_info, "(self)"),
    (account.AccountMixin.get_account_usage, "(self)"),
    (account.AccountMixin.get_quota, "(self)"),
    (account.AccountMixin.fs_sizes, "(self)"),
    (backoff_req.BackOffRequest.get, "(self, url, acc_codes=[200], **kwargs)"),
    (backoff_req.BackOffRequest.post, "(self, url, acc_codes=[200], **kwargs)"),
    (backoff_req.BackOffRequest.patch, "(self, url, acc_codes=[200], **kwargs)"),
    (backoff_req.BackOffRequest.put, "(self, url, acc_codes=[200], **kwargs)"),
    (backoff_req.BackOffRequest.delete, "(self, url, acc_codes=[200], **kwargs)"),
    (backoff_req.BackOffRequest.paginated_get, "(self, url, params=None)"),
    (content.ContentMixin.create_folder, "(self, name, parent=None)"),
    (content.ContentMixin.create_file, "(self, file_name, parent=None)"),
    (
        content.ContentMixin.upload_file,
        "(self, file_name, parent=None, read_callbacks=None, deduplication=False)",
    ),
    (
        content.ContentMixin.upload_stream,
        "(self, stream, file_name, parent=None, read_callbacks=None, deduplication=False)",
    ),
    # the seed shows (*args, **kwargs) only because 0.3.1 wrapped it in a decorator; these are its arguments
    (content.ContentMixin.chunked_download, "(self, node_id, file, **kwargs)"),
    (metadata.MetadataMixin.get_node_list, "(self, **params)"),
    (metadata.MetadataMixin.get_file_list, "(self)"),
    (metadata.MetadataMixin.get_folder_list, "(self)"),
    (metadata.MetadataMixin.get_asset_list, "(self)"),
    (metadata.MetadataMixin.get_trashed_folders, "(self)"),
    (metadata.MetadataMixin.get_trashed_files, "(self)"),
    (metadata.MetadataMixin.get_metadata, "(self, node_id, assets=False, temp_link=True)"),
    (metadata.MetadataMixin.update_metadata, "(self, node_id, properties)"),
    (metadata.MetadataMixin.get_root_node, "(self)"),
    (metadata.MetadataMixin.get_root_id, "(self)"),
    (metadata.MetadataMixin.list_children, "(self, node_id)"),
    (metadata.MetadataMixin.remove_child, "(self, parent_id, child_id)"),
    (metadata.MetadataMixin.move_node_from, "(self, node_id, old_parent_id, new_parent_id)"),
    (metadata.MetadataMixin.move_node, "(self, node_id, parent_id)"),
    (metadata.MetadataMixin.rename_node, "(self, node_id, new_name)"),
    (metadata.MetadataMixin.set_available, "(self, node_id)"),
    (trash.TrashMixin.list_trash, "(self)"),
    (trash.TrashMixin.move_to_trash, "(self, node_id)"),
    (trash.TrashMixin.restore, "(self, node_id)"),
    (trash.TrashMixin.purge, "(self, node_id)"),
    (common.is_valid_id, "(id)"),
]


@pytest.mark.parametrize(
    ("func", "spec"), SEED_SIGNATURES + ISSUE_SIGNATURES, ids=lambda x: getattr(x, "__qualname__", x)
)
def test_signature_matches_seed(func: Callable[..., Any], spec: str) -> None:
    assert_compatible(func, spec)


def test_contract3_extras() -> None:
    sig = inspect.signature(client.ACDClient.__init__)
    assert sig.parameters["timeout"].default == (30, 60)
    assert sig.parameters["retry_deadline"].default is None
    assert sig.parameters["timeout"].kind is inspect.Parameter.KEYWORD_ONLY


def test_constants() -> None:
    assert backoff_req.CONN_TIMEOUT == 30
    assert backoff_req.IDLE_TIMEOUT == 60
    assert backoff_req.REQUESTS_TIMEOUT == (30, 60)
    assert client.ENDPOINT_VAL_TIME == 259200
    assert content.CHUNK_SIZE == 524288000
    assert content.CHUNK_MAX_RETRY == 5
    assert content.FS_RW_CHUNK_SZ == 131072
    assert content.PARTIAL_SUFFIX == ".__incomplete"
    code = common.RequestError.CODE
    assert (code.CONN_EXCEPTION, code.FAILED_SUBREQUEST, code.INCOMPLETE_RESULT) == (1000, 1002, 1003)
    assert (code.REFRESH_FAILED, code.INVALID_TOKEN) == (1004, 1005)
    assert common.RequestError.codes is requests.codes
    assert oauth.OAuthHandler.OAUTH_DATA_FILE == "oauth_data"
    keys = oauth.OAuthHandler.KEYS
    assert (keys.ACC_TOKEN, keys.EXP_IN, keys.EXP_TIME) == ("access_token", "expires_in", "exp_time")
    assert (keys.REDIRECT_URI, keys.REFR_TOKEN) == ("redirect_uri", "refresh_token")
    assert oauth.AppspotOAuthHandler.APPSPOT_URL == "https://tensile-runway-92512.appspot.com/"
    assert oauth.LocalOAuthHandler.AMAZON_OA_LOGIN_URL == "https://amazon.com/ap/oa"
    assert oauth.LocalOAuthHandler.AMAZON_OA_TOKEN_URL == "https://api.amazon.com/auth/o2/token"
    assert oauth.LocalOAuthHandler.CLIENT_DATA_FILE == "client_data"
    assert oauth.LocalOAuthHandler.REDIRECT_URI == "http://localhost"


def test_classes_and_members() -> None:
    for mixin in (account.AccountMixin, content.ContentMixin, metadata.MetadataMixin, trash.TrashMixin):
        assert issubclass(client.ACDClient, mixin)
    assert isinstance(client.ACDClient.content_url, property)
    assert isinstance(client.ACDClient.metadata_url, property)
    assert isinstance(oauth.OAuthHandler.exp_time, property)
    assert issubclass(oauth.OAuthHandler, requests.auth.AuthBase)
    assert issubclass(oauth.AppspotOAuthHandler, oauth.OAuthHandler)
    assert issubclass(oauth.LocalOAuthHandler, oauth.OAuthHandler)
    assert issubclass(common.RequestError, Exception)
    assert metadata.ChangeSet.__name__ == "Changes"
    assert metadata.ChangeSet._fields == ("nodes", "purged_nodes", "checkpoint", "reset")
    for verb in ("get", "post", "patch", "put", "delete", "paginated_get"):
        assert callable(getattr(backoff_req.BackOffRequest, verb))


def test_error_subclasses_contract3() -> None:
    code = common.RequestError.CODE
    expected = {
        404: common.NotFound,
        409: common.Conflict,
        401: common.Unauthorized,
        403: common.Forbidden,
        429: common.RateLimited,
        500: common.ServerError,
        502: common.ServerError,
        503: common.ServerError,
        504: common.ServerError,
        code.CONN_EXCEPTION: common.ConnectionFailed,
        code.INCOMPLETE_RESULT: common.IncompleteResult,
        400: common.RequestError,
        416: common.RequestError,
    }
    for status, cls in expected.items():
        assert common.error_class(status) is cls
        err = common.make_error(status, "msg")
        assert type(err) is cls and isinstance(err, common.RequestError)
        assert (err.status_code, err.msg) == (status, "msg")
    assert common.make_error(429, "x", retry_after=2.5).retry_after == 2.5  # type: ignore[attr-defined]
    assert common.make_error(409, "x", node_id="abc").node_id == "abc"  # type: ignore[attr-defined]


def test_is_valid_id() -> None:
    assert common.is_valid_id("AbCdEfGhIjKlMnOpQr0123")
    assert common.is_valid_id("-bCdEfGhIjKlMnOpQr01_3")
    assert not common.is_valid_id("AbCdEfGhIjKlMnOpQr012")
    assert not common.is_valid_id("AbCdEfGhIjKlMnOpQr012!")
    assert not common.is_valid_id("")


def test_import_has_no_side_effects() -> None:
    assert requests.utils.default_user_agent().startswith("python-requests/")
    assert acdfuse.api.__doc__ and "ACDClient()" in acdfuse.api.__doc__
