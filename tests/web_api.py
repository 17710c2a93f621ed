"""One call of the web demo's HTTP API, as a browser's page (or curl) makes it, for the serve tests."""

import json
import urllib.request


def gradio_api_call(url: str, api_name: str, data: list) -> tuple[str, object]:
    """The last event's name and its data: for an "error" event its message, else the outputs (json.dumps writes
    NaN and Infinity, as curl users send them)."""
    base = f"{url.rstrip('/')}/gradio_api/call/{api_name}"
    request = urllib.request.Request(
        base, data=json.dumps({"data": data}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        event_id = json.load(response)["event_id"]
    with urllib.request.urlopen(f"{base}/{event_id}", timeout=60) as response:
        lines = response.read().decode().split("\n")
    event = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")][-1]
    payload = json.loads([line.removeprefix("data: ") for line in lines if line.startswith("data: ")][-1])
    return event, payload.get("error") if isinstance(payload, dict) else payload
