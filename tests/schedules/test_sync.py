"""The schedule methods through SyncQueueManager, from a plain thread."""

from __future__ import annotations

from pathlib import Path

from cortexflow.api.sync import SyncQueueManager

QUEUES_YAML = """\
version: 1
queues:
  reports:
    handler: os:getcwd
"""


def test_sync_manager_upserts_lists_triggers_and_removes(tmp_path: Path, redis_url: str) -> None:
    (tmp_path / "queues.yaml").write_text(QUEUES_YAML)
    with SyncQueueManager(tmp_path / "queues.yaml", redis_url) as manager:
        manager.upsert_schedule("nightly", queue="reports", cron="0 6 * * *", data={"k": 1})
        [row] = manager.list_schedules()
        assert (row["name"], row["queue"], row["timezone"]) == ("nightly", "reports", "UTC")
        job_id = manager.trigger_schedule("nightly")
        job = manager.run(manager.get_queue("reports").get_job(job_id))
        assert job is not None and job.data == {"k": 1}
        assert manager.remove_schedule("nightly") is True
        assert manager.list_schedules() == []
        assert manager.remove_schedule("nightly") is False
