"""Pretrained style names and availability as the bot shows them."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from aiogram.utils.i18n import lazy_gettext as __

from stylebot.client import JobClient, JobClientError
from stylebot.jobs.spec import PRETRAINED_MODELS

log = logging.getLogger(__name__)

STYLE_TITLES = {
    "style_monet": __("Monet"),
    "style_cezanne": __("Cézanne"),
    "style_ukiyoe": __("Ukiyo-e"),
    "style_vangogh": __("Van Gogh"),
    "summer2winter_yosemite": __("Summer → winter"),
    "winter2summer_yosemite": __("Winter → summer"),
}


def style_title(model: str | None) -> str:
    if model is None:
        return str(__("your style images"))
    return str(STYLE_TITLES.get(model, model))


@dataclass(frozen=True)
class StyleAvailability:
    name: str
    installed: bool
    reason: str | None


class StyleCatalog:
    """Asks the ML side which pretrained styles are installed, at most every ``ttl`` seconds."""

    def __init__(self, client: JobClient, ttl: float = 30.0) -> None:
        self.client = client
        self.ttl = ttl
        self._cached: list[StyleAvailability] | None = None
        self._at = 0.0

    async def list(self) -> list[StyleAvailability]:
        if self._cached is not None and time.monotonic() - self._at < self.ttl:
            return self._cached
        try:
            infos = {info.name: info for info in await self.client.styles()}
        except JobClientError as exc:
            log.warning("styles unavailable from the ML side: %s", exc.code)
            # Unknown is not the same as missing: show them, the job itself will say what is wrong.
            return [StyleAvailability(name, True, None) for name in PRETRAINED_MODELS]
        result = []
        for name in PRETRAINED_MODELS:
            info = infos.get(name)
            if info is None:
                result.append(StyleAvailability(name, False, "not offered by the ML server"))
            else:
                result.append(StyleAvailability(name, bool(info.installed), None))
        self._cached, self._at = result, time.monotonic()
        return result

    async def log_for_operator(self) -> None:
        """One line at start: which style models are missing (users do not see what they would
        offer: a CycleGAN's tile, or the gallery sheet), and the command that adds them."""
        try:
            infos = await self.client.styles()
        except JobClientError as exc:
            log.warning("pretrained styles: the ML side did not answer (%s); users see them all", exc.code)
            return
        missing = [i.name for i in infos if not i.installed]
        installed = len(infos) - len(missing)
        if missing:
            log.info(
                "style models: %d installed; not shown to users: %s (`stylebot models pull %s`)",
                installed,
                ", ".join(missing),
                " ".join(missing),
            )
        else:
            log.info("style models: all %d installed", installed)

    async def get(self, name: str) -> StyleAvailability | None:
        return next((s for s in await self.list() if s.name == name), None)
