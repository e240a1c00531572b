"""Test and benchmark tools shipped with doxa, for code built on it; not for production.

`fake_provider` is an OpenAI- and Anthropic-shaped LLM server on loopback (faults, rate
limits, both batch APIs) that needs the `doxa[testing]` extra (aiohttp); `recording`
replays and records real LLM traffic as cassettes, which `doxa demo` uses. They ship in the
wheel so that a project using doxa can test its own pipeline against the same fakes and
recordings doxa's suite uses, without network or keys.
"""
