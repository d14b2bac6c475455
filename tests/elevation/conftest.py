from __future__ import annotations

import pytest

from stanch.config import Settings
from tests.elevation.helpers import configure


@pytest.fixture()
def esettings(settings: Settings, task_queue: str) -> Settings:
    return configure(settings, task_queue)
