"""Every character as an OpenAI-compatible model: GET /v1/models, POST /v1/chat/completions."""
