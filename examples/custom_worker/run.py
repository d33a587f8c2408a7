"""Run the translations queue inside this asyncio program (WorkerManager), add three jobs
(QueueManager) and print their results. Uses $REDIS_URL, or the embedded server.

    python run.py
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from cortexflow import WorkerManager, get_queue_manager

CONFIG = Path(__file__).with_name("queues.yaml")


async def main() -> None:
    async with WorkerManager(CONFIG), get_queue_manager(CONFIG) as queues:
        ids = [
            await queues.add_job("translations", "translate", {"text": text, "to": to})
            for text, to in [("Hello world", "es"), ("Good morning", "fr"), ("thanks", "es")]
        ]
        translations = queues.get_queue("translations")
        deadline = time.monotonic() + 30
        for job_id in ids:
            while (job := await translations.get_job(job_id)) and job.state != "completed":
                if time.monotonic() > deadline:
                    raise SystemExit(f"job {job_id} is still {job.state}")
                await asyncio.sleep(0.05)
            assert job is not None
            print(f"{job.data['text']!r} -> {job.result['text']!r} ({job.data['to']})")


if __name__ == "__main__":
    asyncio.run(main())
