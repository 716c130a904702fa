"""Re-embed every memory with a model into a new index, built beside the active one, then switch.

    manage.py reembed_memories --model all-MiniLM-L6-v2        # same weights, new version
    manage.py reembed_memories --model /models/my-st-model     # a local sentence-transformers dir
    manage.py reembed_memories --resume 7 | --cancel 7 | --status
    manage.py reembed_memories --drop-retired                  # free the disk of replaced indexes
    ... --no-wait                                              # queue it and return

The chunks run as tasks on queue `batch` (in this process in the embedded mode); the command
follows the job's progress in the database, so interrupting it (Ctrl-C) leaves the job running.
"""

import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.core.errors import EngineConfigError
from apps.memory import services
from apps.memory.models import Job


class Command(BaseCommand):
    help = "Re-embed every memory into a new index with --model, then switch retrieval to it."

    def add_arguments(self, parser):
        action = parser.add_mutually_exclusive_group(required=True)
        action.add_argument("--model", help="a model name the workers know, or a local model directory")
        action.add_argument("--resume", type=int, metavar="JOB", help="queue the chunks of JOB not done yet")
        action.add_argument("--cancel", type=int, metavar="JOB", help="stop JOB and drop its half-built index")
        action.add_argument("--status", action="store_true", help="list the latest jobs")
        action.add_argument(
            "--drop-retired",
            action="store_true",
            help="delete the vectors of indexes a finished job replaced (their rows stay)",
        )
        parser.add_argument("--chunk-size", type=int, default=settings.REEMBED_CHUNK_SIZE)
        parser.add_argument("--no-wait", action="store_true", help="do not follow the progress")

    def handle(
        self,
        *args,
        model=None,
        resume=None,
        cancel=None,
        status=False,
        drop_retired=False,
        chunk_size=500,
        no_wait=False,
        **options,
    ):
        if status:
            for job in Job.objects.select_related("index")[:10]:
                self.stdout.write(f"job {job.pk}: {job.status:9} {job.done}/{job.total} → {job.index}")
            return
        if drop_retired:
            dropped, recent = services.indexes_retired_drop()
            for index in dropped:
                self.stdout.write(f"dropped the vectors of {index}")
            for index in recent:
                self.stdout.write(f"kept {index}: retired less than 10 minutes ago, run this again later")
            return
        try:
            if model:
                if chunk_size < 1:
                    raise CommandError("--chunk-size must be at least 1.")
                job = services.reembed_start(model=model, chunk_size=chunk_size)
                self.stdout.write(f"job {job.pk}: {job.total} memories in {job.chunks_total} chunks → {job.index}")
            elif resume:
                job = services.reembed_resume(job_id=resume)
            else:
                job = services.reembed_cancel(job_id=cancel)
                self.stdout.write(f"job {job.pk} cancelled; retrieval stays on the active index")
                return
        except services.MemoryRequestError as exc:
            raise CommandError(f"{exc.message} ({exc.code})") from None
        except EngineConfigError as exc:
            raise CommandError(str(exc)) from None
        if not no_wait:
            self.follow(job)

    def follow(self, job: Job) -> None:
        """A progress bar until the job ends."""
        while True:
            job.refresh_from_db()
            width = 40
            filled = int(width * job.percent / 100)
            sys.stdout.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {job.done}/{job.total} {job.percent:5.1f}%")
            sys.stdout.flush()
            if job.status != Job.Status.RUNNING:
                break
            time.sleep(0.5)
        sys.stdout.write("\n")
        if job.status == Job.Status.COMPLETE:
            job.index.refresh_from_db()
            self.stdout.write(f"job {job.pk} complete: retrieval now uses {job.index}")
        else:
            raise CommandError(f"job {job.pk} ended {job.status}: {job.error or 'see the worker logs'}")
