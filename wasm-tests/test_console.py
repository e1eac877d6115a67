"""The web console in a real browser: Debian's chromium, headless, driven by
selenium through chromedriver, against a sidecar on SQLite and on
PostgreSQL. It clicks through a key's life (create, read the secret once,
search, deactivate, activate, edit models and expiry, revoke), a budget's
creation and edit, usage charts and their CSV, guardrail counts, and an
invite link redeemed once. The SQLite run takes screenshots along the way,
into the test's temp dir; with TOLLGATE_UPDATE_SCREENSHOTS=1 into docs/
(the README's pictures).

Without chromium and chromedriver (apt-get install chromium chromium-driver)
these tests are skipped, except in CI (CI=true), where that is a failure.
"""

import csv
import hashlib
import os
import time
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

from pg import Postgres
from stack import Stack

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DOCS = Path(__file__).resolve().parent.parent / "docs"
# A plain `make test` leaves the tracked pictures alone.
UPDATE_SCREENSHOTS = bool(os.environ.get("TOLLGATE_UPDATE_SCREENSHOTS"))
DAY = 86400


@pytest.fixture(autouse=True)
def clear_mock():
    """The console needs no Envoy or mock provider: conftest's autouse
    fixture, which starts the whole stack, is not wanted here."""
    yield


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads):
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        message = f"no {' or '.join(missing)}: apt-get install chromium chromium-driver"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the console tests, but there is {message}")
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,860", "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    yield driver
    driver.quit()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def sidecar(request, tmp_path_factory):
    """A sidecar alone (the console needs no Envoy), on either store."""
    pg = None
    db = None
    if request.param == "postgres":
        pg = Postgres.start()
        if pg is None:
            if os.environ.get("TOLLGATE_REQUIRE_POSTGRES"):
                pytest.fail("TOLLGATE_REQUIRE_POSTGRES is set but PostgreSQL is not installed")
            pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
        db = pg.url()
    s = Stack(tmp_path_factory.mktemp(f"console-{request.param}"), db=db)
    s.backend = request.param
    s.start_sidecar()
    yield s
    s.stop()
    if pg:
        pg.stop()


class Console:
    """The browser on one sidecar's console, with the waits a person does by eye."""

    def __init__(self, driver, stack: Stack, shots: Path):
        self.d = driver
        self.stack = stack
        self.shots = shots
        self.base = f"http://127.0.0.1:{stack.sidecar_port}"

    def wait(self, condition, timeout: float = 10):
        # Tables are rebuilt after every change: an element read mid-rebuild goes stale.
        return WebDriverWait(self.d, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(condition)

    def find(self, css: str):
        return self.wait(EC.visibility_of_element_located((By.CSS_SELECTOR, css)))

    def text_in(self, css: str, text: str):
        try:
            self.wait(EC.text_to_be_present_in_element((By.CSS_SELECTOR, css), text))
        except TimeoutException:
            shown = self.d.find_element(By.CSS_SELECTOR, css).text
            raise AssertionError(f"{css} never showed {text!r}; it shows {shown!r}") from None

    def fill(self, form: str, **fields):
        for name, value in fields.items():
            field = self.d.find_element(By.CSS_SELECTOR, f"{form} [name={name}]")
            if field.tag_name == "select":
                Select(field).select_by_visible_text(value)
            else:
                field.clear()
                field.send_keys(value)

    def submit(self, form: str):
        self.d.find_element(By.CSS_SELECTOR, f"{form} button[type=submit]").click()

    def tab(self, name: str):
        self.d.find_element(By.CSS_SELECTOR, f"#nav a[data-tab={name}]").click()
        self.find(f"#tab-{name}")

    def row(self, table: str, row_id: str):
        return self.find(f"{table} tr[data-id='{row_id}']")

    def click_in_row(self, table: str, row_id: str, action: str, confirm: bool = False):
        self.wait(lambda _: self.row(table, row_id).find_element(
            By.CSS_SELECTOR, f"button[data-action={action}]").click() or True)
        if confirm:
            self.wait(EC.alert_is_present()).accept()

    def cell(self, table: str, row_id: str, css: str) -> str:
        return self.row(table, row_id).find_element(By.CSS_SELECTOR, css).text

    def wait_cell(self, table: str, row_id: str, css: str, check) -> str:
        """The cell's text once `check` accepts it (the table may still show
        what it showed before a reload)."""
        return self.wait(lambda _: (lambda t: t if check(t) else None)(self.cell(table, row_id, css)))

    def wait_status(self, row_id: str, status: str):
        self.wait_cell("#keys-table", row_id, ".status", lambda t: t == status)

    def screenshot(self, name: str):
        # One set of pictures: the SQLite run's.
        if self.stack.backend == "sqlite":
            assert self.d.save_screenshot(str(self.shots / f"console-{name}.png"))


def authorize(stack: Stack, key: str) -> dict:
    """The filter's key check, as Envoy makes it."""
    status, body = stack.sidecar("POST", "/v1/authorize", {"key_hash": hashlib.sha256(key.encode()).hexdigest()},
                                 token=stack.service_token)
    assert status == 200, body
    return body


def post_usage(stack: Stack, key_ids: dict[str, str]):
    """A week of usage for two teams and three models, with guardrail events,
    as the filter reports it."""
    now = int(time.time())
    reports = []
    plan = [(0, "ml", "gpt-4o", 3), (0, "ops", "claude-haiku-4-5", 2), (1, "ml", "gpt-4o-mini", 4),
            (2, "ops", "gpt-4o", 1), (3, "ml", "gpt-4o", 2), (5, "ml", "claude-haiku-4-5", 3),
            (6, "ops", "gpt-4o-mini", 2)]
    for days_ago, team, model, n in plan:
        for i in range(n):
            events = [{"guardrail": "pii", "kind": "email", "direction": "input", "action": "redact",
                       "count": 1 + i}]
            if model == "gpt-4o":
                events.append({"guardrail": "pii", "kind": "phone", "direction": "output", "action": "redact",
                               "count": 1})
            reports.append({
                "request_id": f"console-{days_ago}-{team}-{model}-{i}", "key_id": key_ids[team], "team": team,
                "user": "alice" if team == "ml" else "bob", "model": model, "upstream_model": model,
                "provider": "openai", "api": "chat_completions", "input_tokens": 12000 + 1000 * i,
                "output_tokens": 3000, "cached_tokens": 0, "reasoning_tokens": 0, "status": 200,
                "latency_ms": 400, "estimated": False, "stream": False, "guardrail_events": events,
                "ts": now - days_ago * DAY})
    reports.append({
        "request_id": "console-blocked", "key_id": key_ids["ml"], "team": "ml", "user": "alice",
        "model": "gpt-4o", "upstream_model": "gpt-4o", "provider": "openai", "api": "chat_completions",
        "input_tokens": 0, "output_tokens": 0, "cached_tokens": 0, "reasoning_tokens": 0, "status": 400,
        "latency_ms": 1, "estimated": False, "stream": False, "forwarded": False, "ts": now,
        "guardrail_events": [{"guardrail": "secrets", "kind": "aws_access_key", "direction": "input",
                              "action": "block", "count": 1}]})
    status, body = stack.sidecar("POST", "/v1/settle/batch", {"reports": reports}, token=stack.service_token)
    assert status == 200, body


def test_console_key_life_budget_usage_and_invite(browser, sidecar, downloads, tmp_path):
    c = Console(browser, sidecar, DOCS if UPDATE_SCREENSHOTS else tmp_path)
    browser.get(c.base + "/console")

    # Sign in: a wrong key is refused, the master key opens the console.
    c.find("#login-key").send_keys("not-the-master-key")
    c.submit("#login-form")
    c.text_in("#login-error", "refused")
    c.find("#login-key").send_keys(sidecar.master_key)
    c.submit("#login-form")
    c.find("#nav")
    c.find("#tab-keys")

    # Teams.
    c.tab("teams")
    c.fill("#team-form", name="ml", models="gpt-*, claude-*")
    c.submit("#team-form")
    c.row("#teams-table", "ml")
    c.fill("#team-form", name="ops", models="")
    c.submit("#team-form")
    c.row("#teams-table", "ops")

    # A key: its secret is shown once, works at the filter's key check, and is kept nowhere.
    c.tab("keys")
    c.fill("#key-form", name="notebook", team="ml", user="alice", models="gpt-4o*, claude-*",
           expires="30d", metadata='{"cost_center": "42"}')
    c.submit("#key-form")
    secret_el = c.find("#secret-value")
    secret = secret_el.text
    assert secret.startswith("tg-") and len(secret) == 46, secret
    grant = authorize(sidecar, secret)
    assert (grant["valid"], grant["team"], grant["user"], grant["models"]) == \
        (True, "ml", "alice", ["gpt-4o*", "claude-*"])
    key_id = grant["key_id"]
    assert abs(grant["expires_at"] - (time.time() + 30 * DAY)) < 120
    stored = browser.execute_script(
        "return JSON.stringify(Object.assign({}, sessionStorage)) + JSON.stringify(Object.assign({}, localStorage))")
    assert secret not in stored and secret not in browser.current_url
    c.d.find_element(By.ID, "secret-done").click()
    c.wait(EC.invisibility_of_element_located((By.ID, "secret-box")))
    assert secret not in browser.page_source, "the secret leaves the page once stored"

    c.fill("#key-form", name="ci-bot", team="ops", user="bob", models="", expires="", metadata="")
    c.submit("#key-form")
    ops_secret = c.find("#secret-value").text
    ops_id = authorize(sidecar, ops_secret)["key_id"]
    c.d.find_element(By.ID, "secret-done").click()
    c.row("#keys-table", ops_id)

    # Search.
    c.fill("#key-search", search="NOTE")
    c.submit("#key-search")
    c.wait(lambda _: len(c.d.find_elements(By.CSS_SELECTOR, "#keys-table tbody tr[data-id]")) == 1)
    c.row("#keys-table", key_id)
    c.fill("#key-search", search="")
    c.submit("#key-search")
    c.row("#keys-table", ops_id)

    # Deactivate, activate: the filter's check follows.
    c.click_in_row("#keys-table", key_id, "deactivate")
    c.wait_status(key_id, "inactive")
    assert authorize(sidecar, secret) == {"valid": False, "reason": "inactive"}
    c.click_in_row("#keys-table", key_id, "activate")
    c.wait_status(key_id, "active")
    assert authorize(sidecar, secret)["valid"] is True

    # Expiry and model scopes.
    c.click_in_row("#keys-table", key_id, "edit")
    c.find("#key-edit")
    c.fill("#key-edit", models="gpt-4o-mini", expires="2030-01-01")
    c.submit("#key-edit")
    c.wait(EC.invisibility_of_element_located((By.ID, "key-edit")))
    c.wait_cell("#keys-table", key_id, ".expires", lambda t: t.startswith("2030-01-01"))
    record = sidecar.admin("GET", f"/admin/keys/{key_id}")
    assert (record["models"], record["expires_at"], record["metadata"]) == \
        (["gpt-4o-mini"], 1893456000, {"cost_center": "42"})
    assert authorize(sidecar, secret)["models"] == ["gpt-4o-mini"]
    c.screenshot("keys")

    # A budget, created and edited; usage then shows in it.
    c.tab("budgets")
    c.fill("#budget-form", scope="team", scope_id="ml", kind="spend", limit="10", period="monthly", mode="hard")
    c.submit("#budget-form")
    budget = c.wait(lambda _: next(iter(sidecar.admin("GET", "/admin/budgets?scope=team&scope_id=ml")["budgets"]), None))
    limit = c.row("#budgets-table", budget["id"]).find_element(By.CSS_SELECTOR, "input[name=limit]")
    limit.clear()
    limit.send_keys("25")
    c.click_in_row("#budgets-table", budget["id"], "save")
    c.text_in("#notice", "limit $25.00")
    assert sidecar.admin("GET", f"/admin/budgets/{budget['id']}")["limit"] == 25
    post_usage(sidecar, {"ml": key_id, "ops": ops_id})
    c.tab("keys")
    c.tab("budgets")
    c.wait_cell("#budgets-table", budget["id"], ".used", lambda t: t.startswith("$") and t != "$0.00")
    reset = time.strftime("%Y-%m-01 00:00", time.gmtime(budget["resets_at"]))
    assert c.cell("#budgets-table", budget["id"], ".reset") == reset
    c.screenshot("budgets")

    # Usage: charts per day by team and by model, the table, the CSV.
    c.tab("usage")
    c.wait(lambda _: len(c.d.find_elements(By.CSS_SELECTOR, "#usage-charts svg.chart")) == 3)
    c.wait(lambda _: len(c.d.find_elements(By.CSS_SELECTOR, "#usage-charts rect")) > 10)
    c.text_in("#usage-table", "ops")
    assert "ml" in c.d.find_element(By.ID, "usage-table").text
    c.fill("#usage-form", group_by="model")
    c.submit("#usage-form")
    c.text_in("#usage-charts .legend", "gpt-4o-mini")
    c.screenshot("usage")
    c.d.find_element(By.ID, "usage-csv").click()
    # Chrome puts an empty file under the final name first and fills it
    # from a .crdownload: done when that is gone and the file has bytes.
    c.wait(lambda _: not list(downloads.glob("*.crdownload"))
           and [p for p in downloads.glob("tollgate-usage-model-*.csv") if p.stat().st_size], timeout=15)
    [path] = downloads.glob("tollgate-usage-model-*.csv")
    rows = list(csv.DictReader(path.read_text().splitlines()))
    assert rows and set(rows[0]) >= {"day", "model", "requests", "cost_usd", "input_tokens"}
    assert sum(int(r["requests"]) for r in rows) == 17, "every forwarded request, none blocked"
    assert {r["model"] for r in rows} == {"gpt-4o", "gpt-4o-mini", "claude-haiku-4-5"}
    path.unlink()

    # Guardrail events: counts by kind and direction, never text.
    c.tab("guardrails")
    c.text_in("#guardrails-table", "aws_access_key")
    table = c.d.find_element(By.ID, "guardrails-table").text
    assert "email input redact" in table and "phone output redact" in table
    c.find("#guardrails-chart svg rect")
    c.screenshot("guardrails")

    # Revoke, for good.
    c.tab("keys")
    c.click_in_row("#keys-table", key_id, "revoke", confirm=True)
    c.wait_status(key_id, "revoked")
    assert authorize(sidecar, secret) == {"valid": False, "reason": "revoked"}
    assert c.wait(lambda _: not c.row("#keys-table", key_id).find_elements(By.CSS_SELECTOR, "button[data-action]:not([data-action=edit])")), \
        "a revoked key can only be looked at and edited"

    # An invite link: it creates carol's key once.
    c.tab("teams")
    c.fill("#invite-form", team="ml", user="carol", models="claude-*", key_expires_in="90d")
    c.submit("#invite-form")
    link = c.find("#invite-link").text
    assert link.startswith(c.base + "/console/invite#tgi-"), link
    c.d.find_element(By.ID, "invite-done").click()
    c.text_in("#invites-table", "pending")
    c.text_in("#users-table", "alice")
    c.screenshot("teams")

    browser.get(link)
    c.find("#redeem-form")
    assert "#" not in browser.current_url, "the token leaves the address bar"
    c.fill("#redeem-form", name="carol-laptop")
    c.submit("#redeem-form")
    carol_secret = c.find("#redeemed-key").text
    grant = authorize(sidecar, carol_secret)
    assert (grant["valid"], grant["team"], grant["user"], grant["models"]) == (True, "ml", "carol", ["claude-*"])
    c.text_in("#redeemed-scope", "Team ml, user carol")

    # Opened again (a fresh load: from the invite page itself it would only
    # be a fragment change), the link is refused.
    browser.get("about:blank")
    browser.get(link)
    c.submit("#redeem-form")
    c.text_in("#redeem-error", "already used")
    assert not c.d.find_element(By.ID, "redeemed").is_displayed()

    # The console, still signed in in this tab, shows the invite used.
    browser.get(c.base + "/console/#teams")
    c.text_in("#invites-table", "redeemed")
    c.text_in("#users-table", "carol")

    # Signing out forgets the master key.
    c.d.find_element(By.ID, "logout").click()
    c.find("#login-form")
    assert browser.execute_script("return sessionStorage.length") == 0

