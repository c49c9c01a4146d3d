"""Self-certainty from `intuitor serve` as a TRL reward: GRPOTrainer(reward_funcs=self_certainty_reward).

Python's standard library only. The server is INTUITOR_URL (default http://127.0.0.1:8000), with
the key INTUITOR_API_KEY if it needs one. Completions in TRL's conversational form (lists of
{"role", "content"} messages) are scored with the model's chat template; plain strings as they are.
"""
import json
import os
import time
import urllib.error
import urllib.request

INTUITOR_URL = os.environ.get("INTUITOR_URL", "http://127.0.0.1:8000")
INTUITOR_API_KEY = os.environ.get("INTUITOR_API_KEY")


def self_certainty_reward(prompts, completions, **kwargs):
    items = []
    for prompt, completion in zip(prompts, completions):
        if isinstance(completion, list):
            items.append({"messages": list(prompt) + list(completion)})
        else:
            items.append({"prompt": prompt, "completion": completion})
    headers = {"Content-Type": "application/json"}
    if INTUITOR_API_KEY:
        headers["Authorization"] = "Bearer " + INTUITOR_API_KEY
    body = json.dumps({"items": items}).encode("utf-8")
    for attempt in range(10):
        request = urllib.request.Request(INTUITOR_URL + "/score", data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=600) as response:
                return [result["self_certainty"] for result in json.load(response)["results"]]
        except urllib.error.HTTPError as error:
            # 503: the server's queue is full; wait as it asks, then try again.
            if error.code != 503 or attempt == 9:
                raise RuntimeError(f"intuitor serve: {error.code} {error.read().decode('utf-8', 'replace')}") from None
            time.sleep(float(error.headers.get("Retry-After", "1")))
