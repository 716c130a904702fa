#!/bin/sh
# Start a Celery worker for the queues named as arguments; anything after them goes to Celery.
#   personatalk-worker llm               -> celery -A personatalk worker -Q llm ...
#   personatalk-worker llm tts -l DEBUG  -> ... -Q llm,tts ... -l DEBUG
# One prefork pool process and prefetch 1: one model copy per container, one long job at a time,
# and time limits that fire (the parent kills a pool process stuck past its hard limit). A worker
# serving only `llm` with a server engine (LLM_BACKEND=openai) switches itself to
# LLM_WORKER_CONCURRENCY threads, many turns at once (personatalk/celery.py).
set -eu

queues=""
while [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; do
    queues="${queues:+$queues,}$1"
    shift
done
if [ "${1:-}" = "--" ]; then
    shift
fi
if [ -z "$queues" ]; then
    echo "usage: personatalk-worker QUEUE [QUEUE ...] [celery worker options]  (queues: llm)" >&2
    exit 2
fi

node="$(printf '%s' "$queues" | tr ',' '-')@$(uname -n)"
# The health check pings this node name.
printf '%s\n' "$node" > "${WORKER_NODE_FILE:-/tmp/personatalk-worker-node}"

exec celery -A personatalk worker -Q "$queues" --pool prefork --concurrency 1 --prefetch-multiplier 1 \
    --hostname "$node" --without-gossip --loglevel "${LOG_LEVEL:-INFO}" "$@"
