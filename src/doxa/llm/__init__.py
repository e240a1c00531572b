"""The LLM step: one batch's rendered prompt in, validated proposals out.

The extraction schema the model must answer in (`schema`), the extractor that makes one
call with retries, re-asks and the response-cache hook, request pacing (`ratelimit`), the
providers (clients, credentials, request shapes, usage and prices) with their errors, and
the batch-API transport. Everything provider-specific stays in this package, so the
engine and the pure core never see which model answered.
"""
