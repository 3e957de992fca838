"""stylebot: a Telegram bot and ML service for neural style transfer."""

__version__ = "0.1.0"
