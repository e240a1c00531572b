"""Prompts: a batch of events and the records already known, rendered for the LLM.

Sits between relevance (which picks the events of a batch) and the LLM (which reads the
rendered messages): `render` fills the versioned jinja2 templates, escaping whatever a
user wrote, and chooses the slice of known records a prompt shows. The templates' hash is
the prompt version every extracted record carries, so a change of wording is traceable
in every model built with it.
"""
