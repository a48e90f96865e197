"""Web plumbing shared by the apps: service errors, permissions (the roles x actions table), the REST
API's contract, errors, pagination and parsers, and the page decorator and context.

It imports labeling.models (the shared schema) and nothing else of the apps, so both labeling and
embeddings can build on it.
"""
