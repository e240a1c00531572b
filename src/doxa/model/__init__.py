"""The user model: what doxa knows about one user, as data.

Records (beliefs, goals, preferences, with evidence chains and revision history) and the
`UserModel` that holds them, the optional model schema a team declares, the difference
between two versions of a model (what a commit writes), and the index of known records a
prompt and merge look records up by. Every other layer reads and returns these types;
this package depends only on events.
"""
