"""Every page names its icon, and the icon is served: a browser asks for nothing that is not there (a
/favicon.ico 404 was a console error on every page load, the sign-in page's included)."""

from __future__ import annotations

import re

import pytest

from .conftest import PanelClient

pytestmark = pytest.mark.integration


async def test_the_sign_in_page_links_an_icon_that_is_served(client: PanelClient) -> None:
    page = await client.get("/login")
    assert page.status_code == 200
    found = re.search(r'<link rel="icon" type="image/svg\+xml" href="([^"]+)">', page.text)
    assert found is not None
    icon = await client.get(found.group(1))
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.text.startswith("<svg")
