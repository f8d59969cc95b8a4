"""Entry module for ``faust -A streams.worker worker``: the app built from the environment.

Like ``tierpulse worker``, it refuses a bad policy and creates missing topics first — when the
worker starts, not when this module is imported (``faust -A streams.worker worker --help``
needs no broker).
"""

from models.policy import load_policy, load_shadow_policy
from streams.app import create_app
from streams.settings import Settings
from streams.topics import ensure_topics

settings = Settings()
policy = load_policy(settings.policy_path)
shadow = load_shadow_policy(settings.shadow_policy_path, policy)
app = create_app(settings, policy, shadow=shadow)


async def _create_topics() -> None:
    await ensure_topics(settings)


app.before_start.append(_create_topics)
