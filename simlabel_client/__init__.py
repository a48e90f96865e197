"""simlabel's command-line client: talks to a simlabel server over its REST API with a token.

Kept light on purpose: the standard library's urllib for HTTP and tqdm for progress
bars, and nothing of the Django project, so it installs anywhere (`pip install .`).
"""

__version__ = "0.1.0"
