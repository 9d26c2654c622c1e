"""The web console in a real browser: Debian's Chromium driven by Playwright
(pinned in requirements.txt) against the real binary. Jobs are made through
the gRPC API as another client would; what the page shows must follow
without a reload. Screenshots of each page go to target/console-screenshots."""

import json
import os
import shutil
import time
import uuid
from pathlib import Path

import grpc
import pytest
from playwright.sync_api import expect, sync_playwright

from conftest import ROOT, running_server

ACCOUNT = "111122223333"
OTHER = "444455556666"
SUSPENDED = 3  # batchops.v1.JobStatus.JOB_STATUS_SUSPENDED
SHOTS = ROOT / "target" / "console-screenshots"


def chromium():
    """The distribution's Chromium (BATCHOPS_CHROMIUM names another)."""
    for candidate in (os.environ.get("BATCHOPS_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    pytest.fail("Chromium is not installed: `apt install chromium` (.ci/test installs it where it can)")


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        # Chromium's sandbox cannot run as root.
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        launched = playwright.chromium.launch(executable_path=chromium(), args=args)
        yield launched
        launched.close()


class Console:
    """A browser tab on the console, which remembers every URL it loaded."""

    def __init__(self, browser, server, width=1280, height=860):
        self.server = server
        self.context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
        self.page = self.context.new_page()
        self.requests = []
        self.errors = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.set_default_timeout(20_000)

    def open(self, account=ACCOUNT, fragment="#/jobs"):
        self.page.goto(self.server.console + "/" + fragment)
        self.page.get_by_label("Account").fill(account)
        self.page.get_by_role("button", name="Open").click()
        # A mark that a reload would wipe out.
        self.page.evaluate("window.__notReloaded = true")

    def not_reloaded(self):
        return self.page.evaluate("window.__notReloaded === true")

    def shot(self, name):
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def close(self):
        assert not self.errors, self.errors
        origin = self.server.console
        outside = [url for url in self.requests if not url.startswith((origin, "data:", "blob:"))]
        assert not outside, f"the console loaded from elsewhere: {outside}"
        self.context.close()


@pytest.fixture
def console(browser, tmp_path, postgres):
    with running_server(tmp_path, postgres) as server:
        tab = Console(browser, server)
        yield tab
        tab.close()


def put(objects, bucket, key, content):
    path = objects / bucket / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def stub(server, pb, token=None):
    _, _, service_grpc = pb
    channel = grpc.insecure_channel(server.grpc)
    return service_grpc.JobServiceStub(channel), ([("authorization", f"Bearer {token}")] if token else None)


def create_job(server, pb, keys, description, confirmation=True, account=ACCOUNT, token=None, report=True):
    """A checksum job over `photos/<key>` for each key (made where missing
    unless the key starts with `gone`), created over gRPC."""
    job_pb2, service_pb2, _ = pb
    for key in keys:
        if not key.startswith("gone"):
            put(server.objects, "photos", key, f"content of {key}\n".encode())
    manifest_key = f"manifest-{uuid.uuid4().hex[:8]}.csv"
    put(server.objects, "photos", manifest_key, "".join(f"photos,{key}\n" for key in keys).encode())
    client, metadata = stub(server, pb, token)
    request = service_pb2.CreateJobRequest(
        account_id=account,
        client_request_token=str(uuid.uuid4()),
        description=description,
        priority=10,
        confirmation_required=confirmation,
        manifest=job_pb2.Manifest(
            format=job_pb2.MANIFEST_FORMAT_S3_BATCH_OPERATIONS_CSV_20180820, bucket="photos", key=manifest_key
        ),
        operation=job_pb2.Operation(
            compute_object_checksum=job_pb2.ComputeObjectChecksumOperation(algorithm=job_pb2.CHECKSUM_ALGORITHM_SHA256)
        ),
        report=job_pb2.JobReport(
            enabled=report, bucket="reports", prefix="console", report_scope=job_pb2.REPORT_SCOPE_ALL_TASKS
        )
        if report
        else None,
    )
    return client.CreateJob(request, timeout=10, metadata=metadata).job_id


def wait_for_status(server, pb, job_id, status, account=ACCOUNT):
    """Polls DescribeJob until the job has `status` (a JobStatus number),
    for steps that must not start before the server has moved the job."""
    client, _ = stub(server, pb)
    _, service_pb2, _ = pb
    deadline = time.monotonic() + 30
    while True:
        job = client.DescribeJob(service_pb2.DescribeJobRequest(account_id=account, job_id=job_id), timeout=10).job
        if job.status == status:
            return
        assert time.monotonic() < deadline, f"job {job_id} stayed in status {job.status}, not {status}"
        time.sleep(0.05)


def row(console, job_id):
    return console.page.locator(f'tr[data-job-id="{job_id}"]')


def test_the_list_shows_new_jobs_and_their_progress_live(console, pb):
    console.open()
    expect(console.page.get_by_text("Live", exact=True)).to_be_visible()
    expect(console.page.get_by_text("No jobs in account")).to_be_visible()

    job_id = create_job(console.server, pb, [f"list/{i}.jpg" for i in range(20)], "made after the page opened")
    expect(row(console, job_id)).to_contain_text("made after the page opened")
    expect(row(console, job_id).locator(".badge")).to_have_text("Suspended")

    client, _ = stub(console.server, pb)
    _, service_pb2, _ = pb
    client.UpdateJobStatus(
        service_pb2.UpdateJobStatusRequest(account_id=ACCOUNT, job_id=job_id, requested_job_status=4), timeout=10
    )
    expect(row(console, job_id).locator(".badge")).to_have_text("Complete")
    expect(row(console, job_id).get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    expect(row(console, job_id)).to_contain_text("20/20")

    # The status filter asks the server for one status.
    console.page.get_by_label("Status").select_option(label="Suspended")
    expect(console.page.get_by_text("No Suspended jobs")).to_be_visible()
    console.page.get_by_label("Status").select_option(label="Complete")
    expect(row(console, job_id)).to_be_visible()
    assert console.not_reloaded()

    # More jobs, in more statuses, for the screenshot.
    console.page.get_by_label("Status").select_option(label="All")
    waiting = create_job(console.server, pb, ["w1.jpg", "w2.jpg", "w3.jpg"], "nightly checksums")
    failing = create_job(console.server, pb, ["gone-1.jpg", "gone-2.jpg", "x.jpg"], "checksums, some objects missing", confirmation=False)
    expect(row(console, waiting).locator(".badge")).to_have_text("Suspended")
    expect(row(console, failing).locator(".badge")).to_have_text("Complete")
    expect(row(console, failing)).to_contain_text("2 failed")
    console.shot("jobs")


def test_confirming_runs_the_job_to_complete_and_its_report_downloads(console, pb):
    keys = [f"run/{i:03}.jpg" for i in range(40)] + ["gone-1.jpg", "gone-2.jpg"]
    job_id = create_job(console.server, pb, keys, "confirm me")
    console.open(fragment=f"#/jobs/{job_id}")
    page = console.page
    expect(page.locator(".page-head .badge")).to_have_text("Suspended")
    expect(page.get_by_text("The job requires confirmation before it runs").first).to_be_visible()
    console.shot("job-suspended")

    # By keyboard alone: tab to the button, press Enter.
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Confirm and run":
            break
    else:
        pytest.fail("Confirm and run cannot be reached with the keyboard")
    page.keyboard.press("Enter")

    expect(page.locator(".page-head .badge")).to_have_text("Complete")
    expect(page.locator(".panel").first.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    expect(page.get_by_text("40 succeeded · 2 failed · 42 total")).to_be_visible()
    expect(page.get_by_role("button", name="Confirm and run")).to_be_disabled()
    expect(page.get_by_role("button", name="Cancel job")).to_be_disabled()
    assert console.not_reloaded()

    # The report's files come through the server.
    reports = console.server.objects / "reports"
    manifest_path = next(reports.rglob("manifest.json"))
    with page.expect_download() as downloaded:
        page.get_by_role("button", name="manifest.json").click()
    assert Path(downloaded.value.path()).read_bytes() == manifest_path.read_bytes()
    listed = json.loads(manifest_path.read_text())["Results"]
    first = listed[0]["Key"]
    with page.expect_download() as downloaded:
        page.get_by_role("button", name=first.rsplit("/", 1)[1]).click()
    assert Path(downloaded.value.path()).read_bytes() == (reports / first).read_bytes()
    console.shot("job-complete")

    page.get_by_role("link", name="History").click()
    timeline = page.locator(".timeline")
    expect(timeline).to_contain_text("Suspended → Ready")
    expect(timeline).to_contain_text("Completing → Complete")
    expect(timeline).to_contain_text("report written to s3://reports/console/")
    console.shot("job-history")


def test_failed_tasks_are_listed_and_filtered_by_error_code(console, pb):
    keys = ["a.jpg", "gone-a.jpg", "b.jpg", "gone-b.jpg", "..%2Fescape.jpg"]
    job_id = create_job(console.server, pb, keys, "some fail", confirmation=False)
    console.open(fragment=f"#/jobs/{job_id}")
    page = console.page
    expect(page.locator(".page-head .badge")).to_have_text("Complete")
    # The job page sums the failures up by error code, with their first tasks.
    errors = page.locator("table.errors")
    expect(errors.get_by_role("row", name="NoSuchKey")).to_contain_text("2")
    expect(errors.get_by_role("row", name="NoSuchKey")).to_contain_text("task 1 photos/gone-a.jpg")
    expect(errors.get_by_role("row", name="InvalidKey")).to_contain_text("1")
    page.get_by_role("link", name="Task results").click()
    table = page.locator("table.tasks")
    expect(page.get_by_text("3 failed tasks.")).to_be_visible()
    expect(table).to_contain_text("NoSuchKey")
    expect(table).to_contain_text("InvalidKey")

    page.get_by_label("Error code").fill("NoSuchKey")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("2 failed tasks with error code NoSuchKey.")).to_be_visible()
    expect(table.locator("tbody tr")).to_have_count(2)
    expect(table).not_to_contain_text("InvalidKey")
    console.shot("job-tasks")

    page.get_by_role("button", name="Clear filter").click()
    page.get_by_label("All tasks").check()
    expect(page.get_by_text("5 tasks.")).to_be_visible()
    expect(table.locator("tbody tr")).to_have_count(5)


def test_cancel_with_a_reason_and_a_refusal_shows_the_servers_message(console, pb):
    job_id = create_job(console.server, pb, ["c.jpg"], "cancel me")
    console.open(fragment=f"#/jobs/{job_id}")
    page = console.page
    expect(page.locator(".page-head .badge")).to_have_text("Suspended")
    page.get_by_label("Reason (optional)").fill("not needed after all")
    page.get_by_role("button", name="Cancel job").click()
    expect(page.locator(".page-head .badge")).to_have_text("Cancelled")
    expect(page.locator("dl.details")).to_contain_text("not needed after all")
    # What a Cancelled job no longer allows is disabled.
    expect(page.get_by_role("button", name="Confirm and run")).to_be_disabled()
    expect(page.get_by_role("button", name="Set priority")).to_be_disabled()

    # A race: another client confirms the job while this page, its live
    # stream cut, still shows it Suspended. The server's refusal is shown.
    racing = create_job(console.server, pb, ["r.jpg"], "raced")
    # Without its live stream the page cannot see Preparing end: open it once
    # the job is Suspended.
    wait_for_status(console.server, pb, racing, SUSPENDED)
    page.route("**/batchops.v1.JobService/WatchJobs", lambda route: route.abort())
    page.goto(console.server.console + f"/#/jobs/{racing}")
    expect(page.locator(".page-head .badge")).to_have_text("Suspended")
    client, _ = stub(console.server, pb)
    _, service_pb2, _ = pb
    client.UpdateJobStatus(
        service_pb2.UpdateJobStatusRequest(account_id=ACCOUNT, job_id=racing, requested_job_status=11), timeout=10
    )
    page.get_by_role("button", name="Confirm and run").click()
    refusal = page.get_by_role("alert")
    expect(refusal).to_contain_text("The server refused: FailedPrecondition")
    expect(refusal).to_contain_text("Cancelled")
    console.shot("job-refused")


def test_create_form_makes_a_job_and_shows_the_servers_validation(console, pb):
    put(console.server.objects, "photos", "x.jpg", b"x")
    put(console.server.objects, "photos", "form.csv", b"photos,x.jpg\n")
    console.open(fragment="#/create")
    page = console.page
    page.get_by_label("Bucket", exact=True).fill("Bad_Bucket!")
    page.get_by_label("Key", exact=True).fill("form.csv")
    page.get_by_label("Report bucket").fill("reports")
    page.get_by_label("Description").fill("from the form")
    page.get_by_role("button", name="Create job").click()
    expect(page.get_by_role("alert")).to_contain_text("InvalidArgument: manifest.bucket")
    console.shot("create")

    page.get_by_label("Bucket", exact=True).fill("photos")
    page.get_by_role("button", name="Create job").click()
    expect(page.locator(".page-head .badge")).to_have_text("Suspended")
    expect(page.locator("h1")).to_contain_text("from the form")
    expect(page.locator("dl.details")).to_contain_text("s3://photos/form.csv")

    # Priority and tags are edited on the job page.
    page.get_by_label("Priority").fill("42")
    page.get_by_role("button", name="Set priority").click()
    expect(page.get_by_text("Priority set to 42.")).to_be_visible()
    page.get_by_role("button", name="Add tag").click()
    page.get_by_label("Key", exact=True).fill("team")
    page.get_by_label("Value", exact=True).fill("photos")
    page.get_by_role("button", name="Save tags").click()
    expect(page.get_by_text("Tags saved.")).to_be_visible()
    job_id = page.locator("h1 .job-id").inner_text()
    client, _ = stub(console.server, pb)
    _, service_pb2, _ = pb
    described = client.DescribeJob(service_pb2.DescribeJobRequest(account_id=ACCOUNT, job_id=job_id), timeout=10).job
    assert described.priority == 42
    assert [(t.key, t.value) for t in described.tags] == [("team", "photos")]


def test_a_phone_wide_page_needs_no_sideways_scrolling(browser, tmp_path, postgres, pb):
    with running_server(tmp_path, postgres) as server:
        job_id = create_job(server, pb, ["p.jpg", "gone.jpg"], "on a phone", confirmation=False)
        tab = Console(browser, server, width=390, height=844)
        try:
            tab.open()
            expect(row(tab, job_id).locator(".badge")).to_have_text("Complete")
            pages = [
                ("#/jobs", row(tab, job_id)),
                (f"#/jobs/{job_id}", tab.page.locator("dl.details")),
                (f"#/jobs/{job_id}/tasks", tab.page.locator("table.tasks")),
                (f"#/jobs/{job_id}/history", tab.page.locator(".timeline li").last),
                ("#/create", tab.page.get_by_role("button", name="Create job")),
            ]
            for fragment, shown in pages:
                tab.page.goto(server.console + "/" + fragment)
                expect(shown).to_be_visible()
                width = tab.page.evaluate("document.documentElement.scrollWidth")
                assert width <= 390, f"{fragment} is {width} px wide"
            tab.page.goto(server.console + f"/#/jobs/{job_id}")
            expect(tab.page.locator(".page-head .badge")).to_have_text("Complete")
            tab.shot("job-phone")
        finally:
            tab.close()


TOKENS = """
[[tokens]]
name = "tenant-a"
token = "token-of-a"
accounts = ["111122223333"]

[[tokens]]
name = "tenant-b"
token = "token-of-b"
accounts = ["444455556666"]
"""


def test_with_tokens_the_console_asks_for_one_and_it_sees_only_its_account(browser, tmp_path, postgres, pb):
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(TOKENS)
    with running_server(tmp_path, postgres, ["--auth-tokens", str(tokens)]) as server:
        mine = create_job(server, pb, ["t.jpg"], "tenant a's job", token="token-of-a")
        theirs = create_job(server, pb, ["u.jpg"], "tenant b's job", account=OTHER, token="token-of-b")
        tab = Console(browser, server)
        try:
            page = tab.page
            page.goto(server.console + "/#/jobs")
            page.get_by_label("Account").fill(ACCOUNT)
            page.get_by_role("button", name="Open").click()
            dialog = page.get_by_role("dialog")
            expect(dialog).to_contain_text("needs an API token")
            tab.shot("token")
            dialog.get_by_label("Token").fill("token-of-a")
            dialog.get_by_role("button", name="Use token").click()
            expect(row(tab, mine)).to_contain_text("tenant a's job")
            expect(row(tab, theirs)).to_have_count(0)

            # Another account's jobs are not for this token, by id or by list.
            page.goto(server.console + f"/#/jobs/{theirs}")
            expect(page.get_by_role("heading", name="Job not found")).to_be_visible()
            page.get_by_label("Account").fill(OTHER)
            page.get_by_role("button", name="Open").click()
            expect(page.get_by_role("alert")).to_contain_text("PermissionDenied")
            expect(row(tab, theirs)).to_have_count(0)
        finally:
            tab.close()


def test_a_dry_run_from_the_form_shows_its_count_and_touches_nothing(console, pb):
    for name in ["a.jpg", "b.jpg"]:
        put(console.server.objects, "photos", name, b"x" * 1536)
    put(console.server.objects, "photos", "dry.csv", b"photos,a.jpg\nphotos,b.jpg\n")
    console.open(fragment="#/create")
    page = console.page
    page.get_by_label("Bucket", exact=True).fill("photos")
    page.get_by_label("Key", exact=True).fill("dry.csv")
    page.get_by_label("Report bucket").fill("reports")
    page.get_by_label("Description").fill("how many?")
    page.get_by_label("Notification endpoint (optional)").fill("http://127.0.0.1:9/not-allowed")
    page.get_by_label("Dry run").check()
    page.get_by_role("button", name="Count objects (dry run)").click()
    # The server checks the endpoint against its invoke allowlist (empty here).
    expect(page.get_by_role("alert")).to_contain_text("notification.endpoint_url")
    page.get_by_label("Notification endpoint (optional)").fill("")
    page.get_by_role("button", name="Count objects (dry run)").click()
    # A CSV manifest names no sizes: the count comes without bytes.
    expect(page.locator(".page-head .badge")).to_have_text("DryRunComplete")
    expect(page.get_by_test_id("dry-run")).to_have_text(
        "2 objects, size unknown (the manifest gives no sizes): nothing ran and no object was touched."
    )
    # A counted dry run has ended: there is nothing left to cancel.
    expect(page.get_by_role("button", name="Cancel job")).to_be_disabled()
    console.shot("dry-run")
    page.get_by_role("link", name="Jobs", exact=True).first.click()
    listed = page.locator("tr", has_text="how many?")
    expect(listed.locator(".badge.tone-dry")).to_have_text(["dry run", "DryRunComplete"])
    expect(listed).to_contain_text("2 objects counted")
    assert (console.server.objects / "photos" / "a.jpg").exists()
    assert not (console.server.objects / "reports").exists()
