"""Mark runs whose worker stopped sending heartbeats as failed (for cron, when celery beat is not used)."""

from django.core.management.base import BaseCommand

from embeddings.services import runs_fail_stale


class Command(BaseCommand):
    help = "Mark running runs with no recent heartbeat (dead worker) as failed."

    def handle(self, *args, **options):
        count = runs_fail_stale()
        self.stdout.write(f"{count} stale run(s) marked failed")
