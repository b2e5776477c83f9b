"""The web page in a real headless Chromium (Playwright driving the Debian ``chromium`` package): type text, press
play, the audio streams in, the audio element gets the same audio as ``TTS.synthesize``, and no console errors.

Needs ``pip install playwright`` and ``apt-get install chromium`` (browser downloads from Playwright's CDN are not
used); without them the test is skipped, and under ``CI=true`` it fails instead."""
from __future__ import annotations

import base64
import io
import os
import shutil

import pytest
import soundfile as sf

from infer_helpers import assert_audio_close
from serve_helpers import KEY, as_served

CHROMIUM = ("chromium", "chromium-browser", "chromium-headless-shell", "google-chrome")


def _browser_or_skip():
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason, sync_playwright = "playwright is not installed (pip install playwright)", None
    exe = next((p for p in map(shutil.which, CHROMIUM) if p), None)
    if reason is None and exe is None:
        reason = "no Chromium executable (apt-get install chromium)"
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the web page test is required under CI=true but: {reason}", pytrace=False)
        pytest.skip(reason)
    return sync_playwright, exe


@pytest.mark.slow  # a browser start: ~10 s on a loaded 2-core machine
def test_page_streams_and_plays_the_same_audio(key_server, serve_tts):
    sync_playwright, exe = _browser_or_skip()
    srv = key_server
    text = "Hello from the browser. Streaming works!"
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True,
                                    args=["--autoplay-policy=no-user-gesture-required", "--no-sandbox"])
        page = browser.new_page()
        page.set_default_timeout(90_000)  # a loaded 2-core machine: waits, not timing assertions
        page.on("console", lambda m: m.type == "error" and problems.append(m.text))
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(srv.url + "/")
        page.wait_for_function("document.getElementById('status').textContent.includes('API key')")
        page.fill("#apikey", KEY)
        page.dispatch_event("#apikey", "change")  # the page asks for the key before calling /v1/voices
        page.wait_for_function("document.querySelectorAll('#voice option').length > 0")
        assert page.locator("#voice option").all_inner_texts() == ["default"]
        page.fill("#text", text)
        page.fill("#seed", "7")
        page.click("#play")
        page.wait_for_selector("#download:not([hidden])")
        page.wait_for_function("document.getElementById('player').duration > 0")
        chunks = int(page.get_attribute("#player", "data-chunks"))
        wav_b64 = page.evaluate("""async () => {
            const buf = await (await fetch(document.getElementById('player').src)).arrayBuffer();
            let s = ''; for (const b of new Uint8Array(buf)) s += String.fromCharCode(b); return btoa(s); }""")
        status = page.inner_text("#status")
        browser.close()
    assert not problems, problems
    # Pieces are played as they are read; how many reads the bytes take depends on timing, so only >= 1 is asserted
    # (that audio leaves before generation ends is tested over HTTP: tests/serve/test_faults.py).
    assert status.startswith("done:") and chunks >= 1
    wav, sr = sf.read(io.BytesIO(base64.b64decode(wav_b64)), dtype="float32")
    assert sr == serve_tts.sample_rate
    assert_audio_close(wav, as_served(serve_tts.synthesize(text, seed=7)[0]))
