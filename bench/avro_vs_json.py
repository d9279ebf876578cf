"""Encode/decode rate and size of a page of 100 rooms: fastavro container files vs the API's JSON.

Run: `.venv/bin/python -m bench.avro_vs_json` (or `make bench-avro`). It prints a Markdown table and,
with --write, replaces the "Avro vs JSON" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import random
import statistics
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fastavro
import orjson

from contract.avro import AvroSchemas, from_datum, to_datum

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
BEGIN, END = "<!-- avro-vs-json:begin -->", "<!-- avro-vs-json:end -->"
CITIES = [("Berlin", "Germany"), ("Munich", "Germany"), ("Vienna", "Austria"), ("Madrid", "Spain"), ("Lyon", "France")]


def sample_rooms(count: int, seed: int = 1) -> list[dict]:
    """Rooms in API shape with realistic variety (optional area, a few images)."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rooms = []
    for n in range(count):
        city, country = rng.choice(CITIES)
        created = start + timedelta(seconds=rng.randrange(10**7), microseconds=rng.randrange(10**6))
        room = {
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "name": f"Room {n} in {city}",
            "description": "Bright room in a shared flat, close to public transport. " * rng.randint(1, 3),
            "price": rng.randrange(200, 2000),
            "recurrency": rng.choice(["daily", "weekly", "monthly"]),
            "provider": rng.choice(["wg-gesucht", "immoscout", "idealista"]),
            "url": f"https://example.com/listings/{n}",
            "monthly_price": rng.randrange(200, 2000),
            "property_size": f"{rng.randrange(8, 40)} m²",
            "coordinates": {"lat": rng.uniform(40, 55), "lon": rng.uniform(-5, 20)},
            "is_visible": rng.random() > 0.1,
            "images": [{"url": f"https://example.com/listings/{n}/{i}.jpg"} for i in range(rng.randint(0, 4))],
            "created_at": created,
            "updated_at": created,
        }
        if rng.random() > 0.2:
            room["area"] = {"name": f"District {rng.randrange(12)}", "country": country, "city": city}
        rooms.append(room)
    return rooms


def median_rate(operation, records: int, repeats: int) -> float:
    """Median records per second of `operation` over `repeats` timed runs (after one warm-up)."""
    operation()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        operation()
        rates.append(records / (time.perf_counter() - start))
    return statistics.median(rates)


def measure(page_size: int = 100, repeats: int = 200) -> dict:
    """Measure encode/decode rates and sizes for one page of rooms in both formats."""
    schemas = AvroSchemas()
    room_schema = schemas.get("Room")
    rooms = sample_rooms(page_size)
    page = {"data": rooms, "next_cursor": None}

    json_bytes = orjson.dumps(page)
    avro_bytes = schemas.encode_container("Room", rooms)

    def decode_avro() -> list[dict]:
        return [from_datum(room_schema.document, r) for r in fastavro.reader(io.BytesIO(avro_bytes))]

    def encode_avro_raw() -> bytes:
        buffer = io.BytesIO()
        datums = [to_datum(room_schema.document, r) for r in rooms]
        fastavro.writer(buffer, room_schema.parsed, datums, codec="null")
        return buffer.getvalue()

    results = {
        "json_encode": median_rate(lambda: orjson.dumps(page), page_size, repeats),
        "json_decode": median_rate(lambda: orjson.loads(json_bytes), page_size, repeats),
        "avro_encode": median_rate(lambda: schemas.encode_container("Room", rooms), page_size, repeats),
        "avro_encode_raw": median_rate(encode_avro_raw, page_size, repeats),
        "avro_decode": median_rate(decode_avro, page_size, repeats),
        "avro_decode_raw": median_rate(lambda: list(fastavro.reader(io.BytesIO(avro_bytes))), page_size, repeats),
        "json_size": len(json_bytes),
        "avro_size": len(avro_bytes),
        "avro_header_size": len(schemas.encode_container("Room", [])),
    }
    return results


def table(r: dict, page_size: int, repeats: int) -> str:
    """Render the results as Markdown, with the machine and commit."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    body_size = r["avro_size"] - r["avro_header_size"]
    return "\n".join([
        f"## Avro vs JSON: a page of {page_size} rooms",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit}, {os.cpu_count()} cores, {memory_gib:.0f} GiB, "
        f"Python {platform.python_version()}, fastavro {fastavro.__version__}; medians of {repeats} runs, records/s.",
        "",
        "| | JSON (orjson, the API's encoder) | Avro container (fastavro) | Avro / JSON |",
        "| --- | ---: | ---: | ---: |",
        f"| encode, as the API does it | {r['json_encode']:,.0f} | {r['avro_encode']:,.0f} | {r['avro_encode'] / r['json_encode']:.2f}× |",
        f"| decode to API shape | {r['json_decode']:,.0f} | {r['avro_decode']:,.0f} | {r['avro_decode'] / r['json_decode']:.2f}× |",
        f"| decode, raw records | | {r['avro_decode_raw']:,.0f} | {r['avro_decode_raw'] / r['json_decode']:.2f}× |",
        f"| size of the page (bytes) | {r['json_size']:,} | {r['avro_size']:,} | {r['avro_size'] / r['json_size']:.2f}× |",
        f"| size without the embedded schema | | {body_size:,} | {body_size / r['json_size']:.2f}× |",
        "",
        "The container file embeds the writer schema (about "
        f"{r['avro_header_size']:,} bytes), which dominates small responses and is amortised over large pages.",
    ])


def write_section(markdown: str, path: Path = RESULTS) -> None:
    """Replace (or append) this benchmark's section of RESULTS.md, leaving the rest alone."""
    section = f"{BEGIN}\n{markdown}\n{END}"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text, encoding="utf-8")


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description="Avro vs JSON encode/decode rates for a page of rooms.")
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args()
    markdown = table(measure(args.page_size, args.repeats), args.page_size, args.repeats)
    print(markdown)
    if args.write:
        write_section(markdown)


if __name__ == "__main__":
    main()
