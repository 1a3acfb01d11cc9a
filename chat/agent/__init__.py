"""The AI agent: OpenAI-compatible chat completions with the org's tools (app label `ai`)."""
