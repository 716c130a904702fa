"""Test settings: the scaled mode's services on this machine. Only environment defaults differ."""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/personatalk")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")
os.environ.setdefault("SECRET_KEY", "test-secret-key")
os.environ.setdefault("LLM_BACKEND", "scripted")
os.environ.setdefault("TASKS_IN_PROCESS", "false")
os.environ.setdefault("CHROMA_URL", "http://127.0.0.1:18765")  # started by tests/conftest.py
os.environ.setdefault("CHANNEL_FULL_WAIT_S", "2")  # a full channel's wait, shortened for the tests that meet one
os.environ.setdefault("METRICS_ENABLED", "true")  # /metrics, request and query metrics, as an operator turns them on
os.environ.setdefault("PERSONATALK_VAR_DIR", os.path.join(os.path.dirname(os.path.dirname(__file__)), "var", "test"))
os.environ.setdefault("LLM_CACHE_DIR", os.path.join(os.path.dirname(os.path.dirname(__file__)), "var", "models"))

from personatalk.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast user fixtures
