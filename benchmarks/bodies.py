"""Raw DynamoDB response bodies at realistic shapes, for replay into the code under test.

Bodies are serialised exactly as DynamoDB's JSON protocol sends them (typed attribute values,
epoch-second timestamps, string sequence numbers), so parsing them measures the real path.
Item shape: 18 attributes — strings, integers, decimals, booleans, a nested map, a list of
maps, a string set, a number set and a binary value.
"""

from __future__ import annotations

import base64
import json
import random
from typing import Any

GET_RECORDS_LIMIT = 1000
SCAN_PAGE_ITEMS = 2000
FIRST_SEQUENCE = 10**20  # DynamoDB sequence numbers are 21+ digits


def item(rng: random.Random, key: int, version: int) -> dict[str, Any]:
    return {
        "order_id": {"S": f"o-{key:08d}"},
        "customer": {"S": f"customer-{rng.randrange(50_000):05d}"},
        "status": {"S": rng.choice(["placed", "paid", "packed", "shipped", "delivered"])},
        "amount": {"N": f"{rng.uniform(1, 5000):.2f}"},
        "quantity": {"N": str(rng.randint(1, 50))},
        "version": {"N": str(version)},
        "discount": {"N": f"{rng.uniform(0, 0.5):.3f}"},
        "created_at": {"S": "2026-11-24T10:11:12.000Z"},
        "is_gift": {"BOOL": rng.random() < 0.1},
        "express": {"BOOL": rng.random() < 0.3},
        "channel": {"S": rng.choice(["web", "app", "store", "phone"])},
        "country": {"S": rng.choice(["FR", "DE", "US", "JP", "BR", "IN"])},
        "warehouse": {"N": str(rng.randrange(40))},
        "address": {
            "M": {
                "city": {"S": rng.choice(["Paris", "Berlin", "Austin", "Osaka"])},
                "zip": {"S": f"{rng.randrange(100000):05d}"},
            }
        },
        "lines": {
            "L": [
                {"M": {"sku": {"S": f"sku-{rng.randrange(999)}"}, "qty": {"N": "1"}}}
                for _ in range(rng.randint(1, 3))
            ]
        },
        "tags": {"SS": ["a", "b"] if rng.random() < 0.5 else ["c"]},
        "scores": {"NS": [str(rng.randrange(100)), "7"]},
        "checksum": {"B": base64.b64encode(rng.randbytes(8)).decode()},
    }


def scan_bodies(items: int, page_items: int = SCAN_PAGE_ITEMS, seed: int = 1) -> list[bytes]:
    """Scan response bodies holding ``items`` items in pages of ``page_items``."""
    rng = random.Random(seed)
    bodies = []
    for start in range(0, items, page_items):
        page = [item(rng, k, 0) for k in range(start, min(start + page_items, items))]
        body: dict[str, Any] = {"Items": page, "Count": len(page), "ScannedCount": len(page)}
        if start + page_items < items:
            body["LastEvaluatedKey"] = {"order_id": page[-1]["order_id"]}
        bodies.append(json.dumps(body).encode())
    return bodies


def get_records_bodies(records: int, keys: int, seed: int = 2) -> list[bytes]:
    """GetRecords bodies: 60 % MODIFY, 25 % INSERT, 15 % REMOVE, keys repeating in a page."""
    rng = random.Random(seed)
    bodies = []
    sequence = FIRST_SEQUENCE
    for start in range(0, records, GET_RECORDS_LIMIT):
        page = []
        for _ in range(min(GET_RECORDS_LIMIT, records - start)):
            sequence += 1
            key = rng.randrange(keys)
            roll = rng.random()
            event = "MODIFY" if roll < 0.6 else "INSERT" if roll < 0.85 else "REMOVE"
            keys_value = {"order_id": {"S": f"o-{key:08d}"}}
            record: dict[str, Any] = {
                "eventID": f"{sequence:x}",
                "eventName": event,
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "dynamodb": {
                    "ApproximateCreationDateTime": 1795520000.0 + start / 1000,
                    "Keys": keys_value,
                    "SequenceNumber": str(sequence),
                    "SizeBytes": 420,
                    "StreamViewType": "NEW_AND_OLD_IMAGES",
                },
            }
            if event != "REMOVE":
                record["dynamodb"]["NewImage"] = item(rng, key, sequence - FIRST_SEQUENCE)
            if event != "INSERT":
                record["dynamodb"]["OldImage"] = item(rng, key, sequence - FIRST_SEQUENCE - 1)
            page.append(record)
        bodies.append(json.dumps({"Records": page, "NextShardIterator": f"it-{start}"}).encode())
    return bodies
