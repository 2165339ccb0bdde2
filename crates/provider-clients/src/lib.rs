//! Upstream LLM providers as tower services: OpenAI-compatible HTTP and a deterministic mock.
