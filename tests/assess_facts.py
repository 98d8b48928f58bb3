"""Constructed stored facts for the assessment tests: order_facts and alerts rows
written straight into an embedded store (the scoring reads only these)."""
from __future__ import annotations

import shutil
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from supplymon.settings import SHANGHAI, Settings
from supplymon.store import Store

START = datetime(2025, 7, 1, 9, 0, tzinfo=SHANGHAI)


def fact(order_id: str, distributor_id: str, day: int, *, on_time: int | None = 1, grassroots: bool = False,
         institution_id: str = "H001", product_id: str = "P001", vbp: bool = False, quantity: int = 10,
         unit_price: float = 5.0, confirmed: int | None = None, decision: str | None = "accepted",
         response_hours: float | None = 2.0, region_code: str = "150402") -> dict:
    ordered = START + timedelta(days=day)
    responded = None if response_hours is None else ordered + timedelta(hours=response_hours)
    received = ordered + timedelta(hours=20) if on_time else None
    return {
        "order_id": order_id, "ordered_at": ordered, "institution_id": institution_id, "region_code": region_code,
        "area": "urban", "grassroots": int(grassroots), "distributor_id": distributor_id,
        "manufacturer_id": "M001", "product_id": product_id, "product_kind": "drug", "vbp": int(vbp),
        "quantity": quantity, "unit_price": unit_price, "responded_at": responded,
        "decision": decision if responded else None,
        "confirmed_quantity": (quantity if confirmed is None else confirmed) if responded else None,
        "reject_reason": None, "first_shipped_at": received, "first_received_at": received,
        "first_confirmed_at": received, "delivered_quantity": quantity if received else 0,
        "shipments": int(bool(received)), "arrivals": int(bool(received)),
        "deadline_at": ordered + timedelta(hours=24), "response_deadline_at": ordered + timedelta(hours=48),
        "on_time": on_time, "response_hours": response_hours, "version": 1,
    }


def alert(alert_id: str, distributor_id: str, day: int, kind: str = "delivery_overdue", order_id: str = "") -> dict:
    """An alert raised on `day` (+24 h): of an order when `order_id` is given, else of the distributor."""
    return {
        "alert_id": alert_id, "kind": kind, "severity": "warning",
        "subject_type": "order" if order_id else "distributor", "order_id": order_id,
        "distributor_id": distributor_id, "institution_id": "", "product_id": "",
        "region_code": "150402" if order_id else "", "raised_at": START + timedelta(days=day, hours=24),
        "resolved_at": None, "message": "", "details": {}, "version": 1,
    }


def write_store(data_dir: Path, facts: list[dict], alerts: list[dict] = (), namespace: str | None = None) -> None:
    settings = Settings(data_dir=data_dir)
    store = Store(settings.namespaced(namespace) if namespace else settings)
    try:
        store.migrate()
        store.insert("order_facts", facts)
        store.insert("alerts", list(alerts))
    finally:
        store.close()


@pytest.fixture
def workdir():
    """A private temporary directory. Not pytest's tmp_path (nor tmp_path_factory for
    module-wide directories): concurrent pytest sessions of one user clean up each
    other's base directory, and the retention policy "none" removes directories
    between tests."""
    path = Path(tempfile.mkdtemp(prefix="supplymon-assess-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
