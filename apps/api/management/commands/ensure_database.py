import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create the PostgreSQL database named by DATABASE_URL if it does not exist (scaled mode)."

    def handle(self, *args, **options):
        db = settings.DATABASES["default"]
        if "postgresql" not in db["ENGINE"]:
            return
        params = {
            "host": db.get("HOST") or None,
            "port": db.get("PORT") or None,
            "user": db.get("USER") or None,
            "password": db.get("PASSWORD") or None,
            "dbname": "postgres",
            "autocommit": True,
        }
        try:
            with psycopg.connect(**{k: v for k, v in params.items() if v is not None}) as conn:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]).fetchone()
                if not exists:
                    conn.execute(f'CREATE DATABASE "{db["NAME"]}"')
                    self.stdout.write(f"created database {db['NAME']}")
        except psycopg.OperationalError as exc:
            raise CommandError(f"cannot reach PostgreSQL for DATABASE_URL: {exc}") from exc
