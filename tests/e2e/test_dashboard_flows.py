"""The dashboard's user flows in a real headless Chromium against a real platform (API + gan, ml
and llm workers): what a maintenance engineer and a data scientist do by hand.

The flows build on each other in file order (upload → schema → train → predict → explain; TVAE →
report → sample); `STATE` carries ids forward, and a step whose predecessor failed is skipped.
Charts are asserted on what was drawn: each chart canvas records how many points it plotted
(`data-points`), and its pixels are read back to check that something was painted.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.conftest import Platform
from tests.e2e.conftest import AI4I, shot, sign_in

STATE: dict[str, Any] = {}
JOB_TIMEOUT_MS = 300_000
HTTP_ERROR = r"Failed to load resource: the server responded with a status of (401|403|422)"


def need(*keys: str) -> list[Any]:
    missing = [k for k in keys if k not in STATE]
    if missing:
        pytest.skip(f"an earlier flow did not produce {', '.join(missing)}")
    return [STATE[k] for k in keys]


def painted_pixels(page: Any, selector: str) -> int:
    """How many pixels of the canvas are not transparent: > 0 means the chart library drew on it."""
    return page.evaluate("""(sel) => {
        const c = document.querySelector(sel);
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
        return n; }""", selector)


def expect_chart(page: Any, selector: str, min_points: int = 2) -> int:
    chart = page.locator(selector).first
    expect(chart).to_have_attribute("data-points", re.compile(r"^\d+$"))
    points = int(chart.get_attribute("data-points"))
    assert points >= min_points, f"{selector} drew {points} points"
    assert painted_pixels(page, selector) > 500, f"{selector} is blank"
    return points


def go(page: Any, hash_: str, page_name: str) -> None:
    page.evaluate("(h) => { location.hash = h; }", hash_)
    expect(page.locator(f'main#view[data-page="{page_name}"][data-ready="true"]')).to_be_visible()


def wait_job_page_done(page: Any, status: str = "succeeded") -> None:
    """On a job page: live progress reaches 100 % and the badge shows the final status."""
    expect(page.locator("#job-head .badge")).to_have_text(status, timeout=JOB_TIMEOUT_MS)
    if status == "succeeded":
        expect(page.locator("#job-percent")).to_have_text("100 %")


def submit_job(page: Any, submit: str = "#train-submit") -> str:
    """Submit a form that starts a job; the dashboard opens the job's page. Returns the job id."""
    page.click(submit)
    page.wait_for_url(re.compile(r"#/jobs/[0-9a-f]{32}$"))
    return page.url.rsplit("/", 1)[-1]


def follow(page: Any, link: str, page_name: str) -> None:
    """Click a link by its text and wait for the page it opens to have its data."""
    page.get_by_role("link", name=link).click()
    expect(page.locator(f'main#view[data-page="{page_name}"][data-ready="true"]')).to_be_visible()


# ----------------------------------------------------------------------------------- datasets
def test_empty_overview_offers_the_sample_then_drag_and_drop_upload(ui_platform: Platform, page: Any) -> None:
    sign_in(page, ui_platform.base_url, ui_platform.tokens["operator"])
    expect(page.locator("#health .kpi").first).to_contain_text("ok")
    expect(page.locator("#queues")).to_contain_text("gan")
    if ui_platform.api("viewer").get("/api/v1/datasets").json()["total"] == 0:
        expect(page.locator("#getting-started")).to_contain_text("No datasets yet")
        shot(page, "overview")
        page.click("#import-sample")  # the one-click start: the bundled sample becomes a dataset
        page.wait_for_url(re.compile(r"#/datasets/[0-9a-f]{32}$"), timeout=60_000)
        expect(page.locator('main#view[data-page="datasets"][data-ready="true"]')).to_be_visible()
        expect(page.locator("main#view h1")).to_have_text("ai4i2020")
        expect(page.locator(".kpis")).to_contain_text("10,000")

    go(page, "#/datasets", "datasets")
    # A real drop: a DataTransfer holding the AI4I file, dropped on the drop zone.
    page.evaluate("""([text, name]) => {
        const dt = new DataTransfer();
        dt.items.add(new File([text], name, { type: 'text/csv' }));
        const zone = document.getElementById('dropzone');
        zone.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
        zone.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    }""", [AI4I.read_text(), "ai4i2020.csv"])
    page.wait_for_url(re.compile(r"#/datasets/[0-9a-f]{32}$"), timeout=60_000)
    expect(page.locator('main#view[data-page="datasets"][data-ready="true"]')).to_be_visible()
    ds_id = page.url.rsplit("/", 1)[-1]
    expect(page.locator("main#view h1")).to_have_text("ai4i2020")
    expect(page.locator(".kpis")).to_contain_text("10,000")
    expect(page.locator(".kpis")).to_contain_text("339")  # failures, from the inferred target
    assert page.locator("#histograms canvas.hist").count() >= 8
    expect_chart(page, '#histograms canvas[data-column="Torque [Nm]"]', min_points=20)
    expect_chart(page, "#balance-chart", min_points=5)
    STATE["dataset_id"] = ds_id


@pytest.mark.allow_console_errors(HTTP_ERROR)
def test_schema_editor_rejects_a_bad_expression_then_saves(ui_platform: Platform, page: Any) -> None:
    (ds_id,) = need("dataset_id")
    api = ui_platform.api("viewer")
    before = api.get(f"/api/v1/datasets/{ds_id}").json()["schema"]
    sign_in(page, ui_platform.base_url, ui_platform.tokens["operator"])
    go(page, f"#/datasets/{ds_id}", "datasets")
    editor = page.locator("#schema-editor")
    expect(editor.locator('select[name="role:Machine failure"]')).to_have_value("target")
    expect(editor.locator('select[name="role:UDI"]')).to_have_value("ignore")
    # A derived feature over a column that doesn't exist: the API's error is shown, nothing is saved.
    editor.get_by_role("button", name="Add derived feature").click()
    editor.locator('input[name="derived-name"]').last.fill("power")
    editor.locator('input[name="derived-expr"]').last.fill("`Torque [Nm]` * `Spindle speed`")
    page.click("#save-schema")
    expect(page.locator("#schema-error")).to_contain_text("Spindle speed")
    assert api.get(f"/api/v1/datasets/{ds_id}").json()["schema"] == before
    shot(page, "dataset-schema-error")
    # Fixed: the derived power, and the documented torque range of this machine.
    editor.locator('input[name="derived-expr"]').last.fill("`Torque [Nm]` * `Rotational speed [rpm]` * 2 * pi / 60")
    editor.locator('input[name="lo:Torque [Nm]"]').fill("10")
    editor.locator('input[name="hi:Torque [Nm]"]').fill("60")
    page.click("#save-schema")
    expect(page.locator("#banner")).to_contain_text("Schema saved")
    after = api.get(f"/api/v1/datasets/{ds_id}").json()["schema"]
    assert after["derived"] == {"power": "`Torque [Nm]` * `Rotational speed [rpm]` * 2 * pi / 60"}
    assert after["columns"]["Torque [Nm]"]["normal_range"] == [10.0, 60.0]
    assert after["target"] == "Machine failure" and after["failure_modes"] == before["failure_modes"]
    expect(page.locator('input[name="lo:Torque [Nm]"]')).to_have_value("10")
    STATE["torque_range"] = (10, 60)
    shot(page, "dataset-detail")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    saved = download.value.path()
    with open(saved, encoding="utf-8") as f:
        header, first = f.readline(), f.readline()
    assert header.startswith("UDI,Product ID,Type,Air temperature [K]") and first.startswith("1,M14860,M,")
    assert download.value.suggested_filename == "ai4i2020.csv"


# ----------------------------------------------------------------------------------- failure model
@pytest.mark.allow_console_errors(HTTP_ERROR)
def test_train_a_failure_model_and_read_its_evaluation(ui_platform: Platform, page: Any) -> None:
    (ds_id,) = need("dataset_id")
    sign_in(page, ui_platform.base_url, ui_platform.tokens["operator"])
    go(page, f"#/train?dataset={ds_id}", "train")
    form = page.locator("form#train-failure")
    # Fields, defaults and limits come from the OpenAPI schema.
    expect(form.locator("#failure-cv_folds")).to_have_value("5")
    expect(form.locator("#failure-cv_folds")).to_have_attribute("max", "10")
    expect(form.locator("#failure-algorithm option")).to_have_count(3)
    # The API's 422 lands under the field it names.
    form.locator("#failure-cv_folds").fill("1")
    page.click("#train-submit")
    field = form.locator('.field[data-field="cv_folds"]')
    expect(field).to_have_class(re.compile(r"\binvalid\b"))
    expect(field.locator(".error")).to_contain_text("greater than or equal to 2")
    shot(page, "train-inline-error")
    form.locator("#failure-cv_folds").fill("3")
    form.locator("#failure-name").fill("e2e-failure")
    submit_job(page)
    expect(page.locator('main#view[data-page="jobs"][data-ready="true"]')).to_be_visible()
    wait_job_page_done(page)
    expect(page.locator("#job-log")).to_contain_text("fold 3/3")  # progress events arrived live
    follow(page, "Open the model", "models")
    expect(page.locator("main#view h1")).to_have_text("e2e-failure v1")
    pr_points = expect_chart(page, "#pr-chart", min_points=10)
    expect_chart(page, "#roc-chart", min_points=10)
    expect_chart(page, "#calibration-chart", min_points=5)
    expect_chart(page, "#importance-chart", min_points=3)
    model = ui_platform.api("viewer").get("/api/v1/models/e2e-failure:1").json()
    assert pr_points == len(model["metrics"]["curves"]["pr"]["recall"])
    cm = model["metrics"]["confusion_matrix"]
    expect(page.locator("#confusion-matrix")).to_contain_text(f"{cm['fp']:,} false alarms")
    expect(page.locator("#confusion-matrix")).to_contain_text(f"{cm['fn']:,} missed")
    expect(page.locator("#threshold")).to_contain_text("1 × false alarms + 10 × missed failures")
    expect(page.locator("main#view table").filter(has_text="HDF")).to_be_visible()  # per-mode metrics
    shot(page, "model-failure")
    # Point `production` at it.
    page.fill("#alias-name", "production")
    page.click("#set-alias")
    expect(page.locator("#banner")).to_contain_text("e2e-failure@production")
    assert ui_platform.api("viewer").get("/api/v1/models/e2e-failure@production").json()["id"] == model["id"]
    STATE["model_id"] = model["id"]


def test_predict_a_reading_and_stream_its_explanation(ui_platform: Platform, page: Any, llm_server: Any) -> None:
    model_id, _ = need("model_id", "torque_range")
    sign_in(page, ui_platform.base_url, ui_platform.tokens["operator"])
    go(page, f"#/predict?model={model_id}", "predict")
    single = page.locator("#single")
    torque = single.locator('input[name="Torque [Nm]"]')
    expect(single).to_contain_text("normal 10–60 Nm")  # the range set in the schema editor, as a hint
    torque.fill("75")
    single.locator('input[name="Tool wear [min]"]').fill("230")
    single.locator('input[name="Rotational speed [rpm]"]').fill("1250")
    page.click("#predict-submit")
    expect(page.locator("#failure-probability")).to_be_visible()
    expect(page.locator("#out-of-range-note")).to_contain_text("Torque [Nm]")
    expect(page.locator("#prediction tr.out-of-range")).not_to_have_count(0)
    expect_chart(page, "#mode-chart", min_points=3)
    # Explain through the OpenAI-compatible provider; the loopback LLM streams its answer slowly.
    llm_server.then({"kind": "faithful", "token_delay": 0.1})
    page.select_option("#explain-provider", "openai")
    page.click("#explain-button")
    stream = page.locator("#explanation-stream")
    expect(stream).to_have_text(re.compile(r"\w+"), timeout=30_000)  # words appear while being written
    partial = stream.inner_text()
    expect(page.locator("#explanation-summary")).to_be_visible(timeout=60_000)
    final = page.locator("#explanation-summary").inner_text()
    assert partial and final.startswith(partial[: min(len(partial), 20)]), (partial, final)
    explanation = page.locator("#explanation")
    expect(explanation).to_contain_text("worded by openai")
    expect(explanation).to_contain_text("streamed in")
    expect(page.locator("#faithfulness")).to_contain_text("Faithfulness 1")
    expect(explanation.locator("table tbody tr")).not_to_have_count(0)
    expect(explanation.locator("tr.out-of-range")).not_to_have_count(0)  # torque above its normal range
    expect(page.locator("#recommended-actions li")).not_to_have_count(0)
    shot(page, "predict-explain")


# ----------------------------------------------------------------------------------- synthetic data
def test_train_a_small_tvae_watch_its_loss_and_read_the_report(ui_platform: Platform, page: Any,
                                                                tmp_path: Any) -> None:
    need("dataset_id")
    sign_in(page, ui_platform.base_url, ui_platform.tokens["operator"])
    # A 3,000-row slice of AI4I, uploaded through the file chooser (the report trains failure models
    # on real and synthetic rows: a small table keeps the test quick).
    lines = AI4I.read_text().splitlines(keepends=True)
    part = tmp_path / "ai4i-slice.csv"
    part.write_text("".join(lines[:3001]))
    go(page, "#/datasets", "datasets")
    page.fill("#upload-name", "ai4i-slice")
    page.set_input_files("#upload-file", str(part))
    page.wait_for_url(re.compile(r"#/datasets/[0-9a-f]{32}$"), timeout=60_000)
    expect(page.locator("main#view h1")).to_have_text("ai4i-slice")
    ds_id = page.url.rsplit("/", 1)[-1]
    go(page, f"#/train?kind=tvae&dataset={ds_id}", "train")
    form = page.locator("form#train-tvae")
    expect(form.locator("#tvae-epochs")).to_have_value("300")
    form.locator("#tvae-epochs").fill("30")  # fewer can't yet make failure rows at the real rate
    form.locator("#tvae-name").fill("e2e-tvae")
    submit_job(page)
    expect(page.locator("#loss-chart")).to_be_visible()
    wait_job_page_done(page)
    expect(page.locator("#loss-chart")).to_have_attribute("data-points", "30", timeout=10_000)
    expect_chart(page, "#loss-chart", min_points=30)
    shot(page, "job-tvae")
    follow(page, "Open the model", "models")
    follow(page, "Open the synthetic-data report", "synthetic")
    overlays = page.locator("#overlay-histograms canvas.overlay")
    assert overlays.count() >= 6
    expect_chart(page, '#overlay-histograms canvas[data-column="Torque [Nm]"]', min_points=20)
    expect_chart(page, "#failure-rate-chart", min_points=4)
    expect(page.locator("#tstr")).to_contain_text("Train on synthetic, test on real")
    expect(page.locator("#privacy")).to_contain_text("Exact copies")
    shot(page, "synthetic-report")
    # Sample more rows with a chosen failure rate, from the report page.
    page.fill("#sample-rows", "300")
    page.fill("#sample-failure_rate", "0.1")
    submit_job(page, "#sample-submit")
    wait_job_page_done(page)
    follow(page, "Open the dataset", "datasets")
    expect(page.locator(".kpis")).to_contain_text("300")
    expect(page.locator(".kpis")).to_contain_text("10.00 %")  # 30 of 300 rows are failures
    STATE["slice_id"] = ds_id
    # Delete the sampled dataset (after the browser's confirm dialog).
    sampled_id = page.url.rsplit("/", 1)[-1]
    page.once("dialog", lambda d: d.accept())
    page.click("#delete-dataset")
    page.wait_for_url(re.compile(r"#/datasets$"))
    assert ui_platform.api("viewer").get(f"/api/v1/datasets/{sampled_id}").status_code == 404


def test_rul_model_from_a_run_to_failure_fleet(ui_platform: Platform, page: Any, tmp_path: Any) -> None:
    from ml.simulate import simulate_run_to_failure

    fleet, _ = simulate_run_to_failure(24, conditions=6, seed=11)
    path = tmp_path / "fleet.csv"
    fleet.to_csv(path, index=False)
    sign_in(page, ui_platform.base_url, ui_platform.tokens["operator"])
    go(page, "#/datasets", "datasets")
    page.set_input_files("#upload-file", str(path))
    page.wait_for_url(re.compile(r"#/datasets/[0-9a-f]{32}$"), timeout=60_000)
    editor = page.locator("#schema-editor")
    expect(editor.locator('select[name="role:unit"]')).to_have_value("unit")
    expect(editor.locator('select[name="role:cycle"]')).to_have_value("time")
    ds_id = page.url.rsplit("/", 1)[-1]
    go(page, f"#/train?kind=rul&dataset={ds_id}", "train")
    form = page.locator("form#train-rul")
    expect(form.locator("#rul-rul_cap")).to_have_value("125")
    form.locator("#rul-cv_folds").fill("3")
    form.locator("#rul-windows").fill("5, 10, 20")
    submit_job(page)
    wait_job_page_done(page)
    follow(page, "Open the model", "models")
    expect(page.locator("#protocol")).to_contain_text("group k-fold by 'unit'")
    expect_chart(page, "#pred-vs-true-chart", min_points=100)
    expect_chart(page, "#error-by-rul-chart", min_points=10)
    shot(page, "model-rul")
    model_id = page.url.rsplit("/", 1)[-1]
    go(page, f"#/predict?model={model_id}", "predict")
    single = page.locator("#single")
    expect(single.locator('input[name="unit"]')).to_be_visible()
    page.click("#predict-submit")
    expect(page.locator("#rul-value")).to_contain_text("remaining useful life")
    expect(page.locator("#rul-value b")).to_have_text(re.compile(r"^\d"))


def test_cancel_a_running_job_from_its_page(ui_platform: Platform, page: Any) -> None:
    ds_id = STATE.get("slice_id") or need("dataset_id")[0]
    sign_in(page, ui_platform.base_url, ui_platform.tokens["operator"])
    go(page, f"#/train?kind=tvae&dataset={ds_id}", "train")
    page.locator("#tvae-epochs").fill("5000")
    job_id = submit_job(page)
    expect(page.locator("#job-head .badge")).to_have_text("running", timeout=60_000)
    page.click("#cancel-job")
    wait_job_page_done(page, "cancelled")
    assert ui_platform.api("viewer").job(job_id)["status"] == "cancelled"
    STATE["cancelled_job"] = job_id
    expect(page.locator("#job-log")).to_contain_text("cancelled")
    expect(page.locator("#cancel-job")).to_have_count(0)


def test_jobs_list_filters_and_pages_on_the_server(ui_platform: Platform, page: Any) -> None:
    need("cancelled_job")
    api = ui_platform.api()
    for _ in range(51):  # more than one page of 50, whatever ran before
        api.ping("llm")
    total = api.get("/api/v1/jobs", params={"limit": 1}).json()["total"]
    sign_in(page, ui_platform.base_url, ui_platform.tokens["viewer"])
    go(page, "#/jobs", "jobs")
    expect(page.locator("#job-list tbody tr")).to_have_count(50)
    expect(page.locator(".pager")).to_contain_text(f"1–50 of {total:,}")
    first = page.locator('#job-list a[href^="#/jobs/"]').first.get_attribute("href")
    page.get_by_role("button", name="Older →").click()
    expect(page.locator(".pager")).to_contain_text(f"51–{min(total, 100)} of {total:,}")
    assert "offset=50" in page.url
    assert page.locator('#job-list a[href^="#/jobs/"]').first.get_attribute("href") != first
    page.select_option("#filter-status", "cancelled")
    expect(page.locator('main#view[data-page="jobs"][data-ready="true"]')).to_be_visible()
    assert "status=cancelled" in page.url
    rows = page.locator("#job-list tbody tr")
    expect(rows).not_to_have_count(0)
    for i in range(rows.count()):
        expect(rows.nth(i).locator(".badge")).to_have_text("cancelled")
    shot(page, "jobs")


# ----------------------------------------------------------------------------------- roles
@pytest.mark.allow_console_errors(HTTP_ERROR)
def test_a_viewer_cannot_start_jobs_and_a_403_is_explained(ui_platform: Platform, page: Any) -> None:
    need("dataset_id")
    # Keyboard only: the token field has the focus; type, then Enter.
    page.goto(ui_platform.base_url + "/")
    expect(page.locator("#signin-token")).to_be_focused()
    page.keyboard.type(ui_platform.tokens["viewer"])
    page.keyboard.press("Enter")
    expect(page.locator('main#view[data-page="overview"][data-ready="true"]')).to_be_visible()
    expect(page.locator("#whoami")).to_contain_text("viewer")
    go(page, "#/datasets", "datasets")
    expect(page.locator("#dropzone")).to_have_count(0)  # no upload for a viewer
    go(page, f"#/datasets/{STATE['dataset_id']}", "datasets")
    expect(page.locator("#save-schema")).to_be_disabled()
    expect(page.locator("#delete-dataset")).to_have_attribute("title", re.compile("operator"))
    go(page, "#/train", "train")
    submit = page.locator("#train-submit")
    expect(submit).to_be_disabled()
    expect(submit).to_have_attribute("title", re.compile(r"needs the 'operator' role \(you are 'viewer'\)"))
    # Should a request be refused anyway, the 403 is explained in the banner, not swallowed.
    page.evaluate("""async () => {
        const { api } = await import('/static/js/api.js');
        const app = await import('/static/js/app.js');
        try { await api('jobs/ping', { method: 'POST', body: { queue: 'ml' } }); }
        catch (e) { app.showError(e, 'start a job'); }
    }""")
    banner = page.locator("#banner")
    expect(banner).to_contain_text("Not allowed (start a job)")
    expect(banner).to_contain_text("needs the 'operator' role")
    expect(banner).to_contain_text("has 'viewer'")
    shot(page, "viewer-403")


@pytest.mark.allow_console_errors(HTTP_ERROR)
def test_a_revoked_token_signs_the_browser_out(ui_platform: Platform, page: Any) -> None:
    admin = ui_platform.api("admin")
    created = admin.post("/api/v1/tokens", json={"name": "e2e-revoked", "role": "viewer"}).json()
    sign_in(page, ui_platform.base_url, created["token"])
    assert admin.client.delete(f"/api/v1/tokens/{created['id']}").status_code == 204
    # The overview polls every 2 s; the API trusts a verified token for TOKEN_CACHE_SECONDS (5 s).
    expect(page.locator("form#signin")).to_be_visible(timeout=20_000)
    expect(page.locator("#signin-error")).to_contain_text("rejected")
    assert page.evaluate("sessionStorage.getItem('pm.token')") is None
