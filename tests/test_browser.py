"""End to end: the server on loopback, driven by Debian's headless Chromium through selenium
(`chromium` and `chromium-driver`, which .ci/run installs): type a description and see hits,
upload a photo, open a hit's photo and ask for more like a face; rename a person on the people
page and see the name on its hits, search by a photo in a match mode; a screenshot of each step
is saved in the test's temporary folder. Skips, saying why, where Chromium is not installed."""
from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
selenium = pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as ready  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from facesearch import FaceSearch  # noqa: E402
from facesearch.server import create_app  # noqa: E402
from tests.conftest import INDEX_PHOTOS, copy_photos  # noqa: E402

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                                reason="Debian's chromium and chromium-driver are not installed "
                                       "(apt-get install chromium chromium-driver; .ci/run does)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The app on uvicorn in a thread, on a loopback port; yields (base URL, photo folder)."""
    root = tmp_path_factory.mktemp("browser")
    copy_photos(data_dir, INDEX_PHOTOS[:8], root / "photos")
    yield from _serving(root)


@pytest.fixture(scope="module")
def people_server(data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """As `server`, over 3 aligned photos of each of two people (two persons once indexed)."""
    from test_identity import _by_identity, _copy_aligned

    root = tmp_path_factory.mktemp("browser-people")
    by_identity = _by_identity(data_dir)
    for who in (985, 1731):
        _copy_aligned(data_dir, by_identity[who][:3], root / "photos")
    yield from _serving(root)


def _serving(root: Path):
    """Index root/photos into root/index and serve it (see `server`)."""
    import uvicorn

    fs = FaceSearch(root / "index")
    fs.index([root / "photos"])
    port = _free_port()
    web = uvicorn.Server(uvicorn.Config(create_app(search=fs), host="127.0.0.1", port=port,
                                        log_level="warning"))
    thread = threading.Thread(target=web.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not web.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", root / "photos"
    web.should_exit = True
    thread.join(10)
    fs.close()


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
    yield driver
    driver.quit()


def _hits(driver, timeout: float = 60):
    WebDriverWait(driver, timeout).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#results .hit") or d.find_element(By.ID, "error").text)
    assert not driver.find_element(By.ID, "error").text, driver.find_element(By.ID, "error").text
    return driver.find_elements(By.CSS_SELECTOR, "#results .hit")


def test_describe_upload_open_and_more_like(server, browser, tmp_path: Path) -> None:
    base, photos = server
    browser.get(base + "/")
    WebDriverWait(browser, 30).until(lambda d: "faces in" in d.find_element(By.ID, "info").text)

    # a description: hits with scores, per-region numbers and what the text was understood as
    box = browser.find_element(By.ID, "text")
    box.send_keys("black hair, smiling")
    browser.find_element(By.ID, "k").clear()
    browser.find_element(By.ID, "k").send_keys("6")
    box.send_keys(Keys.ENTER)
    hits = _hits(browser)
    assert len(hits) == 6
    assert "Black_Hair" in browser.find_element(By.ID, "understood").text
    assert len(hits[0].find_elements(By.CSS_SELECTOR, ".bars .num")) == 7
    assert "text=black+hair" in browser.current_url and "k=6" in browser.current_url
    WebDriverWait(browser, 30).until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('#results img.thumb')].every(i => i.complete && i.naturalWidth > 0)"))
    browser.save_screenshot(str(tmp_path / "1-description.png"))

    # the URL carries the query: opening it again gives the same hits
    first = [h.get_attribute("data-face") for h in hits]
    browser.get(browser.current_url)
    assert [h.get_attribute("data-face") for h in _hits(browser)] == first

    # a text of pixel attributes alone has no query vector: no region bars, the card says what
    # its score is
    browser.find_element(By.ID, "text").clear()
    browser.execute_script("document.getElementById('results').replaceChildren()")  # no old hits
    browser.find_element(By.ID, "text").send_keys("red hair", Keys.ENTER)
    hits = _hits(browser)
    assert not hits[0].find_elements(By.CSS_SELECTOR, ".bars .num")
    assert hits[0].find_element(By.CSS_SELECTOR, ".bars").text.startswith("score: fit to hair_red")

    # a bad filter shows its error message
    browser.find_element(By.ID, "where").send_keys("hair_colour = 3")
    browser.find_element(By.ID, "go").click()
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "error").text)
    assert "hair_colour" in browser.find_element(By.ID, "error").text
    browser.find_element(By.ID, "where").clear()

    # a photo: its own face comes first
    browser.find_element(By.ID, "text").clear()
    browser.find_element(By.ID, "photo").send_keys(str(photos / INDEX_PHOTOS[3]))
    browser.execute_script("document.getElementById('results').replaceChildren()")  # no old hits
    browser.find_element(By.ID, "go").click()
    hits = _hits(browser)
    assert hits[0].get_attribute("title").endswith(INDEX_PHOTOS[3])
    assert float(hits[0].find_element(By.CSS_SELECTOR, ".head span:last-child").text) > 6.5
    browser.save_screenshot(str(tmp_path / "2-photo.png"))

    # open a hit: its photo with every face boxed, then more like that face
    hits[1].click()
    WebDriverWait(browser, 30).until(ready.visibility_of_element_located((By.ID, "photo-view")))
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#photo-frame .box"))
    assert "photo=" in browser.current_url
    browser.save_screenshot(str(tmp_path / "3-photo-page.png"))
    face = browser.find_element(By.CSS_SELECTOR, "#photo-faces .more-like")
    face_id = face.get_attribute("data-face")
    browser.execute_script("document.getElementById('results').replaceChildren()")  # no old hits
    face.click()
    WebDriverWait(browser, 60).until(lambda d: f"like={face_id}" in d.current_url)
    hits = _hits(browser)
    assert hits and face_id not in [hit.get_attribute("data-face") for hit in hits]  # not itself
    browser.save_screenshot(str(tmp_path / "4-more-like.png"))
    assert all((tmp_path / name).stat().st_size > 10_000 for name in
               ("1-description.png", "2-photo.png", "3-photo-page.png", "4-more-like.png"))


def test_rename_a_person_on_the_people_page_and_search_in_a_match_mode(people_server, browser,
                                                                        tmp_path: Path) -> None:
    base, photos = people_server
    browser.get(base + "/people")
    WebDriverWait(browser, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#people .person-card")) == 2)
    card = browser.find_elements(By.CSS_SELECTOR, "#people .person-card")[0]
    assert card.find_element(By.CSS_SELECTOR, ".head a").text == "3 faces"
    WebDriverWait(browser, 30).until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('#people img.thumb')].every(i => i.complete && i.naturalWidth > 0)"))
    person_id = card.get_attribute("data-person")
    name = card.find_element(By.CSS_SELECTOR, "input.person-name")
    name.send_keys("Ada Lovelace", Keys.ENTER)
    WebDriverWait(browser, 30).until(lambda d: card.find_element(By.CSS_SELECTOR, ".saved").text == "saved")
    # the other person cannot take that name: the one-line error shows and its name stays empty
    other = browser.find_elements(By.CSS_SELECTOR, "#people .person-card")[1].find_element(By.CSS_SELECTOR, "input.person-name")
    other.send_keys("Ada Lovelace", Keys.ENTER)
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "people-error").text)
    assert "already called 'Ada Lovelace'" in browser.find_element(By.ID, "people-error").text
    assert other.get_attribute("value") == ""
    browser.save_screenshot(str(tmp_path / "5-people.png"))

    # clicking a person lists its faces, each with its name
    card.find_element(By.CSS_SELECTOR, ".head a").click()
    hits = _hits(browser)
    assert f"person={person_id}" in browser.current_url and len(hits) == 3
    names = [hit.find_element(By.CSS_SELECTOR, ".person-name") for hit in hits]
    assert [name.text for name in names] == ["Ada Lovelace"] * 3
    assert all(name.get_attribute("href").endswith(f"/?person={person_id}") for name in names)
    WebDriverWait(browser, 30).until(lambda d: "Ada Lovelace" in d.find_element(By.ID, "person-filter").text)

    # a photo in the "same person" mode: its person's faces, each with a same-person percentage
    browser.get(base + "/")
    WebDriverWait(browser, 30).until(lambda d: "faces in" in d.find_element(By.ID, "info").text)
    assert not browser.find_element(By.ID, "match").is_enabled()  # no photo: no match mode
    photo = min(photos.iterdir())
    browser.find_element(By.ID, "photo").send_keys(str(photo))
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "match").is_enabled())
    Select(browser.find_element(By.ID, "match")).select_by_value("person")
    browser.find_element(By.ID, "go").click()
    hits = _hits(browser)
    assert "match=person" in browser.current_url
    same = [hit.find_element(By.CSS_SELECTOR, ".same").text for hit in hits]
    assert same[0].startswith("same person ") and same[0].endswith("%") and int(same[0][12:-1]) > 50
    browser.save_screenshot(str(tmp_path / "6-same-person.png"))
