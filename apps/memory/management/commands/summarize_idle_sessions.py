"""Summarise every session idle for SESSION_IDLE_MINUTES into a memory (what `celery beat` runs every
5 minutes in the scaled mode; run it from cron in the embedded mode)."""

from django.core.management.base import BaseCommand

from workers.dispatch import task_named


class Command(BaseCommand):
    help = "Queue a summary memory for each idle session with messages not yet summed up."

    def handle(self, *args, **options):
        self.stdout.write(f"queued {task_named('workers.embed.tasks.sessions_summarize_idle')()} session summaries")
