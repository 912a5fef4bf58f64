"""Make docs/web-page.png: the search page over an index, every face in it pixelated and blurred
beyond recognition (the CelebA photos may not be redistributed).

    python docs/web_page_screenshot.py --index /tmp/fs_wild_index [--out docs/web-page.png]

Runs `facesearch serve` on a loopback port, opens the page in headless Chromium (selenium, with
Debian's chromium-driver), runs a text query from the URL, then covers every picture on the page:
each image's box is reduced to 8 x 8 blocks and blurred.
"""
from __future__ import annotations

import argparse
import io
import socket
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image, ImageFilter
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def covered(screenshot: bytes, boxes: list[dict], ratio: float) -> Image.Image:
    """The screenshot with every box (CSS pixels; `ratio` device pixels each) made unrecognizable."""
    page = Image.open(io.BytesIO(screenshot)).convert("RGB")
    for box in boxes:
        left, top = int(box["x"] * ratio), int(box["y"] * ratio)
        right, bottom = int((box["x"] + box["w"]) * ratio), int((box["y"] + box["h"]) * ratio)
        left, top, right, bottom = max(left, 0), max(top, 0), min(right, page.width), min(bottom, page.height)
        if right - left < 2 or bottom - top < 2:
            continue
        region = page.crop((left, top, right, bottom))
        blocks = region.resize((8, 8), Image.Resampling.BOX).resize(region.size, Image.Resampling.NEAREST)
        page.paste(blocks.filter(ImageFilter.GaussianBlur(max(region.size) / 12)), (left, top))
    return page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--out", default=str(Path(__file__).with_name("web-page.png")))
    parser.add_argument("--query", default="/?text=black+hair%2C+smiling&k=12&where=age+%3C+40")
    args = parser.parse_args()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "facesearch", "serve", "--index", args.index,
                               "--port", str(port)])
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1150"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=webdriver.ChromeService("/usr/bin/chromedriver"), options=options)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.2)
        driver.get(f"http://127.0.0.1:{port}{args.query}")
        WebDriverWait(driver, 60).until(lambda d: d.execute_script(
            "const i = [...document.querySelectorAll('#results img.thumb')];"
            "return i.length > 0 && i.every(x => x.complete && x.naturalWidth > 0)"))
        boxes = driver.execute_script(
            "return [...document.querySelectorAll('img')].map(i => { const r = i.getBoundingClientRect();"
            " return {x: r.x, y: r.y, w: r.width, h: r.height}; })")
        ratio = driver.execute_script("return window.devicePixelRatio")
        covered(driver.get_screenshot_as_png(), boxes, ratio).save(args.out)
        print(f"{args.out}: {len(boxes)} pictures covered; {driver.find_element(By.ID, 'status').text}")
    finally:
        driver.quit()
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
