"""Read Prometheus metrics as Prometheus does: the exposition text, parsed by prometheus-client's parser."""

import httpx
from prometheus_client.parser import text_string_to_metric_families

Series = dict[tuple[str, frozenset], float]


def series(text: str) -> Series:
    """Every sample of an exposition, keyed by (sample name, its labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Series, name: str, **labels: str) -> float:
    """The sample `name` with exactly these labels; 0 when it is not there (yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape(url: str, *, token: str | None = None, timeout: float = 5) -> Series:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(url, headers=headers, timeout=timeout)
    response.raise_for_status()
    return series(response.text)
