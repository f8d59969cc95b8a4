"""Entry module for ``faust -A streams.worker worker``: the app built from the environment.

Like ``tierpulse worker``, it refuses a bad policy and creates missing topics first (a Faust
worker ignores a source topic that does not exist when it starts).
"""

import asyncio

from models.policy import load_policy
from streams.app import create_app
from streams.settings import Settings
from streams.topics import ensure_topics

settings = Settings()
policy = load_policy(settings.policy_path)
asyncio.run(ensure_topics(settings))
app = create_app(settings, policy)
