"""A custom worker: subclass BaseWorker and implement ``process(job)``.

Named as a queue's handler in queues.yaml (``workers:TranslationWorker``), it is instantiated
once per worker process; ``process`` runs for each job and its return value is the job's result.
"""

from __future__ import annotations

from typing import Any

from cortexflow import BaseWorker
from cortexflow.worker.context import JobContext

WORDS = {
    "es": {"hello": "hola", "world": "mundo", "good": "buenos", "morning": "días",
           "thanks": "gracias"},
    "fr": {"hello": "bonjour", "world": "monde", "good": "bon", "morning": "matin",
           "thanks": "merci"},
}  # fmt: skip


class TranslationWorker(BaseWorker):
    def __init__(self) -> None:
        super().__init__("translations", 5)  # informational: queues.yaml decides

    async def process(self, job: JobContext) -> dict[str, Any]:
        words = job.data["text"].lower().split()
        table = WORDS[job.data["to"]]
        out = []
        for n, word in enumerate(words, 1):
            out.append(table.get(word, word))
            await job.update_progress(round(100 * n / len(words)))
        await job.log(f"translated {len(words)} words to {job.data['to']}")
        return {"text": " ".join(out), "to": job.data["to"]}
