"""Reading /metrics in the tests: Prometheus' text format parsed by prometheus_client's own parser."""

from __future__ import annotations

import math

from prometheus_client.parser import text_string_to_metric_families


class Scrape:
    """One /metrics answer, by sample name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: list[tuple[str, dict[str, str], float]] = [
            (sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        """Return the sum of the samples named `name` whose labels include `labels` (0 when there are none)."""
        matching = [v for n, lab, v in self.samples if n == name and all(lab.get(k) == w for k, w in labels.items())]
        return math.fsum(matching) if matching else 0.0

    def has(self, name: str) -> bool:
        """Return True when the scrape has a sample named `name`."""
        return any(n == name for n, _, _ in self.samples)

    def requests(self, operation_id: str, method: str, status: int) -> float:
        """Return rooms_http_requests_total for one label set."""
        return self.value("rooms_http_requests_total", operation_id=operation_id, method=method, status=str(status))


def scrape(client) -> Scrape:
    """GET /metrics through `client` (a TestClient or httpx client) and parse it."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    return Scrape(response.text)
