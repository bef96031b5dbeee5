"""Demo data: create the ``orders`` table with a NEW_AND_OLD_IMAGES stream, fill it, and keep
changing it (inserts, updates, deletes) at a steady rate.

    python demo/seed.py --endpoint http://127.0.0.1:4566 --items 3000 --rate 20
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

STATUSES = ["placed", "paid", "packed", "shipped", "delivered", "returned"]
PRODUCTS = ["lamp", "desk", "chair", "mug", "pen", "notebook", "cable", "monitor"]


def order(rng: random.Random, order_id: str) -> dict[str, Any]:
    created = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(480_000))
    lines = [
        {
            "M": {
                "product": {"S": rng.choice(PRODUCTS)},
                "qty": {"N": str(rng.randint(1, 5))},
                "unit_price": {"N": f"{rng.uniform(2, 400):.2f}"},
            }
        }
        for _ in range(rng.randint(1, 3))
    ]
    item: dict[str, Any] = {
        "order_id": {"S": order_id},
        "customer": {"S": f"customer-{rng.randrange(500):03d}"},
        "status": {"S": rng.choice(STATUSES)},
        "amount": {"N": f"{rng.uniform(5, 2000):.2f}"},
        "quantity": {"N": str(rng.randint(1, 12))},
        "created_at": {"S": created.strftime("%Y-%m-%dT%H:%M:%S.000Z")},
        "is_gift": {"BOOL": rng.random() < 0.1},
        "lines": {"L": lines},
    }
    if rng.random() < 0.3:
        item["tags"] = {"SS": rng.sample(["priority", "fragile", "bulk", "promo"], 2)}
    return item


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--table", default="orders")
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=20.0, help="changes per second")
    args = parser.parse_args()
    ddb = boto3.client(
        "dynamodb",
        endpoint_url=args.endpoint,
        region_name="us-east-1",
        aws_access_key_id="demo",
        aws_secret_access_key="demo",
    )
    rng = random.Random(42)
    ddb.create_table(
        TableName=args.table,
        KeySchema=[{"AttributeName": "order_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "order_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    for start in range(0, args.items, 25):
        requests = [
            {"PutRequest": {"Item": order(rng, f"o-{i:06d}")}}
            for i in range(start, min(start + 25, args.items))
        ]
        ddb.batch_write_item(RequestItems={args.table: requests})
    print(f"seeded {args.items} orders into table {args.table}; now changing it", flush=True)
    next_id = args.items
    while True:
        roll = rng.random()
        if roll < 0.3:
            ddb.put_item(TableName=args.table, Item=order(rng, f"o-{next_id:06d}"))
            next_id += 1
        elif roll < 0.9:
            ddb.update_item(
                TableName=args.table,
                Key={"order_id": {"S": f"o-{rng.randrange(next_id):06d}"}},
                UpdateExpression="SET #s = :s",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":s": {"S": rng.choice(STATUSES)}},
            )
        else:
            ddb.delete_item(
                TableName=args.table, Key={"order_id": {"S": f"o-{rng.randrange(next_id):06d}"}}
            )
        time.sleep(1.0 / args.rate)


if __name__ == "__main__":
    main()
