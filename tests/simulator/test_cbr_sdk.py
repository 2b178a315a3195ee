"""The official CBR SDK is the judge of the simulator's CBR v3 face.

``huaweicloudsdkcbr``'s ``CbrClient`` signs every request with AK/SK (the simulator checks the
signature like a CSBS one) and parses every answer into its own models: a field the face gets
wrong in type or name fails here, not in production.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from huaweicloudsdkcbr.v1 import (
    BackupReplicateReq,
    BackupReplicateReqBody,
    CbrClient,
    CopyBackupRequest,
    ListBackupsRequest,
    ListOpLogsRequest,
    ShowBackupRequest,
    ShowReplicationCapabilitiesRequest,
)
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkcore.http.http_config import HttpConfig

from orchestrator.simulator.cbr_views import vault_id
from tests.helpers.simthread import simulator_thread

if TYPE_CHECKING:
    from orchestrator.simulator import Simulator


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with simulator_thread(items=30, regions=["cn-north-4", "cn-east-3"]) as served:
        yield served


def _client(sim: Simulator, project_id: str, sk: str | None = None) -> Any:
    config = HttpConfig.get_default_config()
    config.timeout = (5, 5)
    config.retry_times = 0
    credentials = BasicCredentials(sim.config.ak, sk or sim.config.sk, project_id)
    return (
        CbrClient.new_builder()
        .with_http_config(config)
        .with_credentials(credentials)
        .with_endpoints([sim.base_url])
        .build()
    )


def _available(sim: Simulator, project_id: str) -> str:
    for item in sim.state.items_of(project_id):
        if item.status == "available" and not sim.state.records_of(item):
            return item.id
    raise AssertionError("no fresh available backup in the estate")


def _copy_request(sim: Simulator, backup_id: str, source_region: str) -> Any:
    destination = next(d for d in sim.state.capabilities()[source_region])
    dest_project = sim.state.destination_projects[destination]
    body = BackupReplicateReqBody(
        destination_project_id=dest_project,
        destination_region=destination,
        destination_vault_id=vault_id(dest_project, destination),
        name="copy_by_sdk",
        enable_acceleration=False,
    )
    return CopyBackupRequest(backup_id=backup_id, body=BackupReplicateReq(replicate=body))


def test_copy_backup_then_show_list_and_follow(sim: Simulator) -> None:
    project = sim.state.projects[0]
    client = _client(sim, project.id)
    backup_id = _available(sim, project.id)

    answer = client.copy_backup(_copy_request(sim, backup_id, project.region)).replication
    assert answer.backup_id == backup_id
    assert answer.source_region == project.region
    assert answer.project_id == project.id
    assert answer.replication_record_id

    shown = client.show_backup(ShowBackupRequest(backup_id=backup_id)).backup
    assert shown.id == backup_id
    assert shown.vault_id == vault_id(project.id, project.region)
    assert [r.id for r in shown.replication_records] == [answer.replication_record_id]
    assert shown.replication_records[0].destination_vault_id == answer.destination_vault_id

    listed = client.list_backups(ListBackupsRequest(vault_id=shown.vault_id, limit=5))
    assert listed.count == len(sim.state.items_of(project.id))
    assert len(listed.backups) == 5
    after = client.list_backups(
        ListBackupsRequest(vault_id=shown.vault_id, limit=5, marker=listed.backups[-1].id)
    )
    assert not {b.id for b in after.backups} & {b.id for b in listed.backups}

    logs = client.list_op_logs(
        ListOpLogsRequest(operation_type="replication", resource_id=shown.resource_id)
    ).operation_logs
    mine = [log for log in logs if log.id == answer.replication_record_id]
    assert len(mine) == 1
    assert mine[0].extra_info.replication.source_backup_id == backup_id
    assert mine[0].extra_info.replication.destination_region == answer.destination_region
    assert mine[0].status == "waiting"
    sim.advance(sim.config.copy_wait_s + sim.config.copy_duration_s + 1)
    again = client.list_op_logs(
        ListOpLogsRequest(operation_type="replication", resource_id=shown.resource_id)
    ).operation_logs
    assert {log.status for log in again if log.id == answer.replication_record_id} <= {
        "success",
        "failed",
    }


def test_replication_capabilities(sim: Simulator) -> None:
    project = sim.state.projects[0]
    regions = (
        _client(sim, project.id)
        .show_replication_capabilities(ShowReplicationCapabilitiesRequest())
        .regions
    )
    assert {r.name: list(r.replication_destinations) for r in regions} == {
        name: list(dests) for name, dests in sim.state.capabilities().items()
    }


def test_replicating_twice_is_refused_with_1009_through_the_sdk(sim: Simulator) -> None:
    project = sim.state.projects[0]
    client = _client(sim, project.id)
    backup_id = _available(sim, project.id)
    request = _copy_request(sim, backup_id, project.region)
    client.copy_backup(request)
    with pytest.raises(ClientRequestException) as caught:
        client.copy_backup(request)
    assert caught.value.status_code == 400
    assert caught.value.error_code == "BackupService.1009"


def test_a_vault_of_another_region_is_refused(sim: Simulator) -> None:
    project = sim.state.projects[0]
    client = _client(sim, project.id)
    request = _copy_request(sim, _available(sim, project.id), project.region)
    request.body.replicate.destination_vault_id = vault_id(
        request.body.replicate.destination_project_id, project.region
    )
    with pytest.raises(ClientRequestException) as caught:
        client.copy_backup(request)
    assert caught.value.error_code == "BackupService.1013"


def test_a_wrong_signature_is_refused(sim: Simulator) -> None:
    project = sim.state.projects[0]
    client = _client(sim, project.id, sk="not-the-secret-key")
    with pytest.raises(ClientRequestException) as caught:
        client.show_replication_capabilities(ShowReplicationCapabilitiesRequest())
    assert caught.value.status_code == 401
