"""What a person does in the inspector, in a real browser against a real server: watch
the demo load, sign in (a wrong key first), find a user, read their interests and the
timeline, suppress a facet and see it leave the list's reasons, send feedback, and ask
why, reading the answer as it streams in.

Screenshots of each page go to a temporary folder, or to the folder named by
INTEREST_SCREENSHOTS (the README's come from `INTEREST_SCREENSHOTS=docs/screenshots`)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.utils.inspector import Inspector

pytestmark = pytest.mark.slow

WAIT = 30_000  # ms


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("INTEREST_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def page(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 1360, "height": 1000})
    page = context.new_page()
    yield page
    context.close()


def reasons(page: Any) -> list[dict[str, str]]:
    return list(page.eval_on_selector_all(
        "#recs li .reason", "nodes => nodes.map(n => ({facet: n.dataset.facetId, "
        "label: n.dataset.label, kind: n.dataset.kind}))"))


def test_a_person_inspects_a_demo_user_in_the_browser(inspector: Inspector, page: Any,
                                                      shots: Path) -> None:
    from playwright.sync_api import expect

    page.goto(f"{inspector.url}/ui")

    # First start: the page answers while the demo loads, and says how far it is.
    banner = page.locator("#demo-banner")
    banner.wait_for(state="visible", timeout=WAIT)
    # (Waits use locators: the page's Content-Security-Policy forbids evaluating strings.)
    page.locator("#demo-text", has_text="profiles").wait_for(timeout=WAIT)
    assert "Loading the demo" in banner.inner_text()
    page.screenshot(path=str(shots / "sign-in-while-the-demo-loads.png"))
    inspector.release_model.set()
    page.locator("#demo-banner[data-state='loaded']").wait_for(state="attached", timeout=WAIT)

    # A wrong key: a clear message, and nothing kept.
    key = inspector.demo_key()
    page.fill("#key", "it_not-a-real-key")
    page.click("#signin-button")
    error = page.locator("#signin-error")
    error.wait_for(state="visible", timeout=WAIT)
    assert "not accepted" in error.inner_text()
    assert page.evaluate("sessionStorage.length") == 0

    page.fill("#key", key)
    page.click("#signin-button")
    page.locator("a.user-link", has_text="ml-401").wait_for(timeout=WAIT)
    assert page.locator("#tenant-name").inner_text() == "tenant: demo"
    assert "150" in page.locator("#stats").inner_text()  # the catalog's size

    # Prefix search over GET /v1/users.
    page.fill("#user-prefix", "zz")
    page.click("#user-search button")
    page.locator("#users", has_text='No user id starts with "zz"').wait_for(timeout=WAIT)
    assert page.locator("a.user-link").count() == 0
    page.fill("#user-prefix", "ml-4")
    page.click("#user-search button")
    page.locator("a.user-link", has_text="ml-401").wait_for(timeout=WAIT)
    page.screenshot(path=str(shots / "overview.png"))

    # The user's page: facets, a drawn timeline, an explained list.
    page.click("a.user-link >> text=ml-401")
    page.locator("#facets .facet").first.wait_for(timeout=WAIT)
    page.locator("#recs li").first.wait_for(timeout=WAIT)
    paths = page.eval_on_selector_all("#timeline path.facet-line",
                                      "nodes => nodes.map(n => n.getAttribute('d'))")
    assert paths and all(len(re.findall(r"L", d)) >= 2 for d in paths), paths
    assert page.locator("#timeline-legend li").count() == len(paths)
    # Ahead of now each facet's curve decays: it ends lower (a larger y) than it starts.
    ahead = page.eval_on_selector_all("#timeline path.facet-projection",
                                      "nodes => nodes.map(n => n.getAttribute('d'))")
    # Only facets the last version still holds are projected: one archived before it
    # (faded, or passed over by later refreshes) ends where it was archived.
    assert 0 < len(ahead) <= len(paths)
    for d in ahead:
        ys = [float(y) for y in re.findall(r"[\d.]+,([\d.]+)", d)]
        assert len(ys) > 10 and ys[-1] > ys[0], d
    before = reasons(page)
    facet_reasons = [r for r in before if r["kind"] == "facet"]
    assert facet_reasons, before
    page.screenshot(path=str(shots / "user.png"), full_page=True)

    # Suppress the facet behind most of the list: a new list comes without it.
    counts: dict[str, int] = {}
    for r in facet_reasons:
        counts[r["facet"]] = counts.get(r["facet"], 0) + 1
    gone = max(counts, key=lambda f: counts[f])
    first_list = page.locator("#recs-meta").inner_text()
    page.click(f"#facets .facet[data-facet-id='{gone}'] button.suppress")
    expect(page.locator("#recs-meta")).not_to_have_text(first_list, timeout=WAIT)
    page.locator("#suppressed .facet[data-facet-id='" + gone + "']").wait_for(
        state="attached", timeout=WAIT)
    after = reasons(page)
    assert after and gone not in {r["facet"] for r in after}, (gone, after)
    assert page.locator(f"#facets .facet[data-facet-id='{gone}']").count() == 0
    assert page.locator("#timeline path.facet-line").count() >= 1

    # Reword the facet now behind the list: the facet and the next list's reasons say it
    # in the user's words.
    reasons_now = [r for r in after if r["kind"] == "facet"]
    assert reasons_now, after
    kept, old_label = reasons_now[0]["facet"], reasons_now[0]["label"]
    facet = page.locator(f"#facets .facet[data-facet-id='{kept}']")
    facet.locator("button.reword-toggle").click()
    facet.locator("form.reword input[name=label]").fill("Films I love")
    second_list = page.locator("#recs-meta").inner_text()
    facet.locator("form.reword button[type=submit]").click()
    page.locator(f"#facets .facet[data-facet-id='{kept}'] .label",
                 has_text="Films I love").wait_for(timeout=WAIT)
    expect(page.locator("#recs-meta")).not_to_have_text(second_list, timeout=WAIT)
    # (A reworded facet is re-embedded, so it may now lead to other items, or none.)
    assert {r["label"] for r in reasons(page) if r["facet"] == kept} <= {"Films I love"}
    assert old_label not in {r["label"] for r in reasons(page)}, reasons(page)

    # Feedback on the new list carries its recommendation_id.
    first = page.locator("#recs li").first
    item_id = first.get_attribute("data-item-id")
    first.locator("button.like").click()
    first.locator(".sent", has_text="like sent").wait_for(timeout=WAIT)
    rid = page.locator("#recs-meta").inner_text().split(" list ")[1].split(" ")[0]
    auth = {"Authorization": f"Bearer {key}"}
    events = httpx.get(f"{inspector.url}/v1/users/ml-401/events", headers=auth,
                       params={"limit": 5}).json()["events"]
    assert any(e["type"] == "like" and e["item_id"] == item_id
               and e["recommendation_id"] == rid for e in events), events

    # Why? The answer arrives token by token and cites the user's own events.
    page.select_option("#chat-item", item_id)
    page.click("#chat-ask")
    page.locator("#chat-answer[data-state='done']").wait_for(timeout=WAIT)
    tokens = int(page.locator("#chat-answer").get_attribute("data-tokens") or 0)
    assert tokens >= 10, tokens  # one `token` event per word of the scripted answer
    assert "animated family films" in page.locator("#chat-answer").inner_text()
    cited = page.eval_on_selector_all("#chat-cites .cite", "ns => ns.map(n => n.dataset.eventId)")
    assert cited and all(c.startswith("ml-401-") for c in cited), cited
    page.screenshot(path=str(shots / "user-after-suppress-and-why.png"), full_page=True)

    # The key is in the tab's session storage only: not in a URL, the page or a log line.
    assert page.evaluate("Object.values(sessionStorage)") == [key]
    assert key not in page.url and key not in page.content()
    assert not [line for line in inspector.logs.lines if key in line]
    assert any("GET /v1/users/ml-401/profile" in line for line in inspector.logs.lines)

    # Signing out forgets it.
    page.click("#sign-out")
    page.locator("#signin").wait_for(state="visible", timeout=WAIT)
    assert page.evaluate("sessionStorage.length") == 0
