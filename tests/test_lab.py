"""The student's JupyterLab (`make lab`): started through the same launcher as the Makefile
(autograder/student_lab/lab.py) on a temporary copy of notebooks/, checked over its REST
API, in headless Chromium, and with `nbgrader validate` on an untouched and a solved
notebook."""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from browser import chromium, console_errors, network_events

REPO = Path(__file__).resolve().parents[1]
LAUNCHER = REPO / "autograder" / "student_lab" / "lab.py"
ASG = "02-planar-flows"  # the quickest assignment to validate (about 7 s per run)
HEADING = "Assignment 2: Planar flows"
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


def test_makefile_uses_the_launcher():
    """`make lab` and this test must start the same thing."""
    recipe = re.search(r"^lab:.*\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.M)
    assert recipe, "Makefile has no lab target"
    assert "autograder/student_lab/lab.py" in recipe.group(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str, body: dict | None = None, method: str | None = None):
    """GET, or POST (or `method`) with a JSON body; returns (status, text)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Authorization": f"token {token}"}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _solve(release: Path, source: Path) -> dict:
    """The release notebook with every solution cell's source taken from the source
    notebook's cell of the same nbgrader grade_id."""
    nb = json.loads(release.read_text())
    answers = {c["metadata"]["nbgrader"]["grade_id"]: c["source"]
               for c in json.loads(source.read_text())["cells"]
               if c["metadata"].get("nbgrader", {}).get("solution")}
    replaced = 0
    for cell in nb["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if meta.get("solution"):
            cell["source"] = answers[meta["grade_id"]]
            replaced += 1
    assert replaced == len(answers) > 0
    return nb


def _validate(notebook: Path, env: dict) -> subprocess.CompletedProcess:
    """The CLI with the student lab's nbgrader config, as its Validate button loads it."""
    env = {**env, "JUPYTER_CONFIG_PATH": str(LAUNCHER.parent)}
    return subprocess.run([str(BIN / "nbgrader"), "validate", notebook.name], cwd=notebook.parent,
                          env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def lab(tmp_path):
    """The student lab on a copy of notebooks/, with Jupyter's user folders in tmp_path.
    Yields (base_url, token, root, env, log_path); the server's process group is killed after."""
    root = tmp_path / "notebooks"
    shutil.copytree(REPO / "notebooks", root)
    env = dict(os.environ)
    for var in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
        env[var] = str(tmp_path / var.lower())
    env.pop("JUPYTER_CONFIG_PATH", None)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    port, token = _free_port(), secrets.token_hex(16)
    log_path = tmp_path / "lab.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, str(LAUNCHER), "--root", str(root), "--exchange", str(tmp_path / "exchange"),
             f"--port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 45
        while True:
            if proc.poll() is not None:
                pytest.fail(f"lab exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if _get(f"{base}/api/status", token)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"lab did not answer in 45 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        yield base, token, root, env, log_path
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass


def test_student_lab(lab, tmp_path):
    base, token, root, env, log_path = lab

    # Server side: student extensions answer, instructor ones are not there.
    status, body = _get(f"{base}/assignments?course_id=flows-and-scores", token)
    listed = json.loads(body)
    assert status == 200 and listed["success"], body
    released = sorted(p.name for p in root.iterdir() if (p / f"{p.name}.ipynb").is_file())
    assert sorted(a["assignment_id"] for a in listed["value"]) == released
    assert all(a["status"] == "fetched" for a in listed["value"]), listed["value"]
    assert _get(f"{base}/nbgrader_version?version=0.9.6", token) == (200, '{"success": true}')
    assert _get(f"{base}/formgrader", token)[0] == 404
    assert _get(f"{base}/formgraders", token)[0] == 404  # the course list's endpoint

    # Frontend: the page config disables the instructor plugins and the news feed.
    status, page = _get(f"{base}/lab", token)
    config = json.loads(re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>',
                                  page, re.S).group(1))
    disabled = set(config["disabledExtensions"])
    assert {"@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment",
            "@jupyter/nbgrader:course-list", "@jupyterlab/apputils-extension:announcements"} <= disabled
    assert not disabled & {"@jupyter/nbgrader:assignment-list", "@jupyter/nbgrader:validate-assignment",
                           "@jupyter/nbgrader:menu"}
    assert "@jupyter/nbgrader" in {e["name"] for e in config["federated_extensions"]}

    # The notebook renders in a browser; the Validate button is there, Create Assignment is not.
    shots = REPO / "_build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with chromium() as driver:
        driver.get(f"{base}/lab/tree/{ASG}/{ASG}.ipynb?token={token}")
        wait = WebDriverWait(driver, 40)
        wait.until(lambda d: any(HEADING in h.text for h in d.find_elements(By.CSS_SELECTOR, ".jp-Notebook h1")))
        wait.until(lambda d: any("YOUR CODE HERE" in e.text for e in d.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-InputArea-editor")))
        wait.until(lambda d: "Validate" in [e.text for e in d.find_elements(
            By.CSS_SELECTOR, ".jp-NotebookPanel-toolbar .jp-ToolbarButtonComponent-label")])
        time.sleep(1)  # let the kernel indicator and fonts settle for the screenshot
        driver.save_screenshot(str(shots / f"lab-{ASG}.png"))
        assert not driver.find_elements(By.ID, "nbgrader-create_assignemnt")  # nbgrader's id, sic
        menus = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-itemLabel")]
        assert "Nbgrader" in menus, menus
        driver.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item")[menus.index("Nbgrader")].click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".lm-Menu .lm-Menu-itemLabel"))
        items = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".lm-Menu .lm-Menu-itemLabel") if e.text]
        assert "Assignment List" in items, items
        assert not {"Course List", "Formgrader"} & set(items), items
        requests = [e["url"] for e in network_events(driver) if e["kind"] == "request"]
        errors = console_errors(driver)
    # chrome:// pages are the browser's own (its blank tab); every other request must be the lab's.
    outside = [u for u in requests if not u.startswith((base, f"ws://127.0.0.1:{base.rsplit(':', 1)[1]}",
                                                        "data:", "blob:", "chrome:"))]
    assert not outside, f"the lab asked for {outside}"
    assert not errors, errors

    # The Validate button's request: the untouched notebook fails on the exercises' stubs.
    status, body = _get(f"{base}/assignments/validate", token, {"path": f"{ASG}/{ASG}.ipynb"})
    result = json.loads(body)
    assert status == 200 and result["success"], body[-2000:]
    failed = result["value"].get("failed", [])
    # Every failure is an unattempted exercise (its stub's NotImplementedError, or a derivation's
    # name not yet defined) or a written answer still reading YOUR ANSWER HERE, which the lab
    # (student_lab/written_answers.py) reports as unanswered, not as a failed test.
    unanswered = [f for f in failed if f["source"].strip() == "YOUR ANSWER HERE"]
    assert unanswered and all(f["raw_error"].startswith("Unanswered written answer (not a failed test)")
                              for f in unanswered), body[-2000:]
    code = [f for f in failed if f not in unanswered]
    assert code and any("NotImplementedError" in f["raw_error"] for f in code), body[-2000:]
    assert all("NotImplementedError" in f["raw_error"] or "NameError" in f["raw_error"] for f in code), body[-2000:]

    # nbgrader validate: the untouched release fails on its exercises, the solved one passes.
    nb = root / ASG / f"{ASG}.ipynb"
    env["FLOWLIB_LAB_EXCHANGE"] = str(tmp_path / "exchange")
    untouched = _validate(nb, env)
    assert untouched.returncode == 0, untouched.stderr
    assert re.search(r"VALIDATION FAILED ON \d+ CELL\(S\)", untouched.stdout), untouched.stdout[-2000:]
    assert "NotImplementedError" in untouched.stdout
    solved_dir = tmp_path / "solved" / ASG
    solved_dir.mkdir(parents=True)
    solved = solved_dir / nb.name
    solved.write_text(json.dumps(_solve(nb, REPO / "solutions" / ASG / nb.name)))
    passed = _validate(solved, env)
    assert passed.returncode == 0, passed.stderr
    assert "Success! Your notebook passes all the tests." in passed.stdout, passed.stdout[-2000:]
    assert "VALIDATION FAILED" not in passed.stdout

    log = log_path.read_text()
    assert not re.search(r"^\[E |Traceback", log, re.M), log[-3000:]


def _chapter_title(chapter: str) -> str:
    """The first level-1 heading of book/<chapter>.md."""
    text = (REPO / "book" / f"{chapter}.md").read_text()
    return re.search(r"^# (.+)$", text, re.M).group(1).strip()


def test_chapter_links_open_the_chapter(book_build, lab):
    """Each notebook's chapter link, as the lab shows it, opens that chapter of the website
    (the lab's copy of _build/html at /course-site/); saving keeps the relative link on disk."""
    base, token, root, env, log_path = lab
    if not (REPO / "_build" / "html" / "index.html").is_file():
        pytest.fail("the website is not built (see test_book_builds_without_warnings; the lab serves _build/html)")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    released = sorted(p.name for p in root.iterdir() if (p / f"{p.name}.ipynb").is_file())
    assert released == sorted(p.name for p in (REPO / "solutions").iterdir() if p.is_dir()), released
    link = re.compile(r"\]\((/course-site/book/([\w.-]+)\.html)\)")
    problems = []
    with chromium() as driver:
        wait = WebDriverWait(driver, 40)
        for asg in released:
            # What the lab's contents API gives the frontend: the intro's chapter link, rewritten.
            status, body = _get(f"{base}/api/contents/{asg}/{asg}.ipynb", token)
            assert status == 200, body[:500]
            model = json.loads(body)
            found = link.findall(model["content"]["cells"][0]["source"])
            if not found or "../../book/" in model["content"]["cells"][0]["source"]:
                problems.append(f"{asg}: intro has no /course-site/ chapter link: "
                                f"{model['content']['cells'][0]['source'][:300]!r}")
                continue
            href, chapter = found[0]
            # In the browser: the rendered link, clicked, opens the chapter in a new tab.
            driver.get(f"{base}/lab/tree/{asg}/{asg}.ipynb?token={token}")
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f".jp-Notebook a[href$='{href}']"))
            anchor = driver.find_elements(By.CSS_SELECTOR, f".jp-Notebook a[href$='{href}']")[0]
            lab_tab = driver.current_window_handle
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", anchor)
            anchor.click()
            wait.until(lambda d: len(d.window_handles) == 2)
            driver.switch_to.window([h for h in driver.window_handles if h != lab_tab][0])
            title = _chapter_title(chapter)
            try:
                wait.until(lambda d: any(title in h.text for h in d.find_elements(By.CSS_SELECTOR, "main h1")))
            except Exception:
                problems.append(f"{asg}: {driver.current_url} does not show chapter {title!r}: "
                                f"{driver.find_element(By.TAG_NAME, 'body').text[:300]!r}")
            if not driver.current_url.startswith(f"{base}/course-site/book/{chapter}.html"):
                problems.append(f"{asg}: the link opened {driver.current_url}")
            driver.close()
            driver.switch_to.window(lab_tab)
            # Saving through the lab writes the released (relative) link back.
            status, body = _get(f"{base}/api/contents/{asg}/{asg}.ipynb", token,
                                {"type": "notebook", "format": "json", "content": model["content"]}, method="PUT")
            if status != 200:
                problems.append(f"{asg}: saving through the contents API gave HTTP {status}: {body[:300]}")
            on_disk = json.loads((root / asg / f"{asg}.ipynb").read_text())["cells"][0]["source"]
            if f"../../book/{chapter}.md" not in "".join(on_disk) or "/course-site/" in "".join(on_disk):
                problems.append(f"{asg}: after a save the file's chapter link is not ../../book/{chapter}.md")
    assert not problems, "\n".join(problems)
    # The site is for the logged-in user only, read-only.
    status, body = _get(f"{base}/course-site/index.html", "wrong-token")  # redirected to the login page
    assert status != 200 or _chapter_title("01-change-of-variables") not in body, body[:300]
    log = log_path.read_text()
    assert not re.search(r"^\[E |Traceback", log, re.M), log[-3000:]
