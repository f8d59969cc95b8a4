"""Entry module for ``faust -A streams.worker worker``: the app built from the environment."""

from models.policy import load_policy
from streams.app import create_app
from streams.settings import Settings

settings = Settings()
app = create_app(settings, load_policy(settings.policy_path))
