"""Push the dashboards to a running Grafana through its HTTP API (grafana-client).

For a Grafana that is not provisioned from our files (a shared or hosted instance). The
folder is created or renamed, then every dashboard is posted with ``overwrite: true`` and
its fixed uid, so pushing again updates in place. Errors that an operator can fix (wrong
URL, Grafana down, token refused) become :class:`PushError` with a message saying so.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass

import niquests
from grafana_client import GrafanaApi
from grafana_client.client import (
    GrafanaClientError,
    GrafanaException,
    GrafanaTimeoutError,
    GrafanaUnauthorizedError,
)

FOLDER_UID = "urbanbrain"
FOLDER_TITLE = "urbanbrain"


class PushError(RuntimeError):
    pass


@dataclass
class PushResult:
    folder_uid: str
    folder_created: bool
    dashboards: list[str]  # uids


def _client(url: str, token: str | None, timeout: float) -> GrafanaApi:
    return GrafanaApi.from_url(url, credential=token or None, timeout=timeout)


def _explain(url: str, exc: Exception) -> PushError:
    if isinstance(exc, GrafanaUnauthorizedError):
        return PushError(f"Grafana at {url} refused the credentials (401 Unauthorized): "
                         "check the API token (a service-account token with Editor rights)")
    if isinstance(exc, GrafanaClientError) and exc.status_code == 403:
        return PushError(f"Grafana at {url} denied the request (403 Forbidden): the token "
                         f"lacks the rights to write dashboards: {exc.message}")
    if isinstance(exc, GrafanaTimeoutError | niquests.exceptions.Timeout):
        return PushError(f"Grafana at {url} did not answer in time: {exc}")
    if isinstance(exc, GrafanaException) and not exc.status_code:
        return PushError(f"Grafana unreachable at {url}: {exc}")
    if isinstance(exc, niquests.exceptions.RequestException | OSError):
        return PushError(f"Grafana unreachable at {url}: {exc}")
    return PushError(f"Grafana at {url} refused the request: {exc}")


def push(url: str, token: str | None, models: Mapping[str, Mapping], *,
         folder_uid: str = FOLDER_UID, folder_title: str = FOLDER_TITLE,
         timeout: float = 10.0) -> PushResult:
    """Create/update the folder, then post every dashboard (overwrite, fixed uid)."""
    api = _client(url, token, timeout)
    created = False
    try:
        try:
            folder = api.folder.get_folder(folder_uid)
        except GrafanaClientError as exc:
            if exc.status_code != 404:
                raise
            api.folder.create_folder(folder_title, uid=folder_uid)
            created = True
        else:
            if folder.get("title") != folder_title:
                api.folder.update_folder(folder_uid, title=folder_title, overwrite=True)
        uids = []
        for model in models.values():
            dash = copy.deepcopy(dict(model))
            dash["id"] = None  # Grafana matches on uid; a foreign id would conflict
            api.dashboard.update_dashboard({
                "dashboard": dash, "folderUid": folder_uid, "overwrite": True,
                "message": "urbanbrain dashboards push",
            })
            uids.append(dash["uid"])
    except (GrafanaException, niquests.exceptions.RequestException, OSError) as exc:
        raise _explain(url, exc) from exc
    return PushResult(folder_uid, created, uids)
