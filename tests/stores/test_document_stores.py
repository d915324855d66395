"""The two bundled stores behave as truthound's ``BaseStore`` promises."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from truthound.stores.base import BaseStore, StoreError, StoreNotFoundError, StoreQuery
from truthound.stores.filesystem import FileSystemStore
from truthound.stores.memory import InMemoryStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["memory", "filesystem"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BaseStore]:
    created: BaseStore = (
        InMemoryStore() if request.param == "memory" else FileSystemStore(tmp_path / "store")
    )
    with created:
        yield created


def _result(run: int, asset: str = "orders", status: str = "success", **extra: object) -> dict:
    return {
        "id": f"run-{run:04d}",
        "data_asset": asset,
        "run_time": (T0 + timedelta(minutes=run)).isoformat(),
        "status": status,
        "tags": {"env": "prod" if run % 2 else "dev"},
        **extra,
    }


def test_save_returns_the_id_and_get_returns_an_equal_copy(store: BaseStore) -> None:
    item = _result(1, payload={"rows": [1, 2, 3]})
    assert store.save(item) == "run-0001"
    fetched = store.get("run-0001")
    assert fetched == item
    fetched["status"] = "mutated"
    assert store.get("run-0001")["status"] == "success"


def test_items_without_an_id_get_a_fresh_one(store: BaseStore) -> None:
    first, second = store.save({"data_asset": "a"}), store.save({"data_asset": "a"})
    assert first != second
    assert store.get(first)["id"] == first


def test_missing_items_raise_store_not_found(store: BaseStore) -> None:
    with pytest.raises(StoreNotFoundError) as caught:
        store.get("nope")
    assert isinstance(caught.value, StoreError)
    assert (caught.value.item_type, caught.value.identifier) == ("item", "nope")
    assert not store.exists("nope")
    assert store.delete("nope") is False


def test_exists_and_delete(store: BaseStore) -> None:
    store.save(_result(1))
    assert store.exists("run-0001")
    assert store.delete("run-0001") is True
    assert not store.exists("run-0001")


@pytest.mark.parametrize("bad_id", ["../escape", "", ".hidden", "a/b", "x" * 201, "spa ce"])
def test_unsafe_ids_are_rejected_by_name(store: BaseStore, bad_id: str) -> None:
    with pytest.raises(ValueError, match="invalid item id"):
        store.save({"id": bad_id})
    with pytest.raises(StoreError, match="invalid item id"):
        store.get(bad_id)


def test_unserialisable_items_are_rejected(store: BaseStore) -> None:
    with pytest.raises(StoreError, match="not JSON-serialisable"):
        store.save({"id": "x", "value": object()})
    with pytest.raises(StoreError, match="mappings"):
        store.save(["not", "a", "mapping"])


def test_query_filters_orders_newest_first_and_pages(store: BaseStore) -> None:
    for run in range(10):
        store.save(
            _result(
                run,
                asset="orders" if run < 6 else "users",
                status="failure" if run in (2, 3) else "success",
            )
        )
    newest_orders = store.query(StoreQuery(data_asset="orders"))
    assert [r["id"] for r in newest_orders] == [f"run-{n:04d}" for n in (5, 4, 3, 2, 1, 0)]
    failures = store.query(StoreQuery(status="failure", ascending=True))
    assert [r["id"] for r in failures] == ["run-0002", "run-0003"]
    window = store.query(
        StoreQuery(
            start_time=(T0 + timedelta(minutes=3)).replace(tzinfo=None),
            end_time=T0 + timedelta(minutes=5),
            ascending=True,
        )
    )
    assert [r["id"] for r in window] == ["run-0003", "run-0004", "run-0005"]
    tagged = store.query(StoreQuery(tags={"env": "prod"}, limit=2, offset=1))
    assert [r["id"] for r in tagged] == ["run-0007", "run-0005"]
    assert store.count(StoreQuery(data_asset="users")) == 4
    assert store.list_ids(StoreQuery(data_asset="users", limit=1)) == ["run-0009"]


def test_iter_query_batches_and_respects_the_limit(store: BaseStore) -> None:
    for run in range(25):
        store.save(_result(run))
    assert len(list(store.iter_query(StoreQuery(), batch_size=7))) == 25
    limited = [r["id"] for r in store.iter_query(StoreQuery(limit=9, ascending=True), batch_size=4)]
    assert limited == [f"run-{n:04d}" for n in range(9)]
    with pytest.raises(ValueError, match="batch_size"):
        next(store.iter_query(StoreQuery(), batch_size=0))


def test_get_latest_count_and_clear(store: BaseStore) -> None:
    for run in range(6):
        store.save(_result(run, asset="a" if run % 3 else "b"))
    latest = store.get_latest("a")
    assert latest is not None
    assert latest["id"] == "run-0005"
    assert store.get_latest("missing") is None
    assert store.clear(StoreQuery(data_asset="b")) == 2
    assert store.count() == 4
    assert store.clear() == 4
    assert store.count() == 0


def test_negative_paging_is_rejected() -> None:
    with pytest.raises(ValueError, match="limit"):
        StoreQuery(limit=-1)
    with pytest.raises(ValueError, match="offset"):
        StoreQuery(offset=-2)


def test_concurrent_saves_are_all_kept(store: BaseStore) -> None:
    def writer(worker: int) -> None:
        for n in range(50):
            store.save({"id": f"w{worker}-{n}", "data_asset": "x"})

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert store.count() == 200


def test_filesystem_layout_is_one_json_file_per_item(tmp_path: Path) -> None:
    with FileSystemStore(tmp_path) as store:
        store.save(_result(1))
        store.save(_result(2))
    assert sorted(p.name for p in (tmp_path / "default").iterdir()) == [
        "run-0001.json",
        "run-0002.json",
    ]


def test_filesystem_write_failure_keeps_the_previous_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed replace (standing in for a crash before the rename) leaves no partial file."""
    store = FileSystemStore(tmp_path)
    store.save(_result(1))

    def failing_replace(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(StoreError, match="No space left"):
        store.save(_result(1, status="failure"))
    monkeypatch.undo()
    assert store.get("run-0001")["status"] == "success"
    assert [p.name for p in (tmp_path / "default").iterdir()] == ["run-0001.json"]


def test_filesystem_store_reads_what_another_instance_wrote(tmp_path: Path) -> None:
    FileSystemStore(tmp_path).save(_result(3))
    assert FileSystemStore(tmp_path).get("run-0003")["data_asset"] == "orders"
