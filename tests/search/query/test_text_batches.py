"""Query texts that wait together for a process's model slot are encoded in one call, each
request gets its own text's vector, and a refusal or a failure leaves nothing behind."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from search import encoder
from search.errors import SearchUnavailable
from search.query import slots, text_batches
from search.query.vectors import query_vector_for_text


@pytest.fixture
def one_slot(settings):
    settings.IMAGESEARCH_MODEL_SLOTS = 1
    settings.IMAGESEARCH_MODEL_SLOT_WAIT = 10.0
    slots.reset()
    yield settings
    slots.reset()


@pytest.fixture
def encodes(monkeypatch) -> list[list[str]]:
    """The texts of each call that reaches the model (the real one, called through)."""
    calls: list[list[str]] = []
    real = encoder.encode_texts

    def counting(texts, **kwargs):
        calls.append(list(texts))
        return real(texts, **kwargs)

    monkeypatch.setattr(encoder, "encode_texts", counting)
    return calls


def _wait_for_waiting(count: int, results: dict[int, object]) -> None:
    deadline = time.monotonic() + 30
    while len(text_batches._waiting) < count:
        assert not results, f"requests ended before the slot was free: {results}"
        assert time.monotonic() < deadline, f"{len(text_batches._waiting)} of {count} requests waiting"
        time.sleep(0.005)


def _search_in_threads(texts: list[str]) -> tuple[list[threading.Thread], dict[int, object]]:
    results: dict[int, object] = {}

    def search(i: int, text: str) -> None:
        try:
            results[i] = query_vector_for_text(text=text)
        except Exception as exc:  # noqa: BLE001 - the test reads what each request got
            results[i] = exc

    threads = [threading.Thread(target=search, args=(i, t)) for i, t in enumerate(texts)]
    for thread in threads:
        thread.start()
    return threads, results


def _join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()


def test_texts_waiting_together_for_the_slot_are_encoded_in_one_call(one_slot, encodes):
    texts = ["a batched red bicycle", "a batched dog on a beach at night", "batched", "a batched red bicycle"]
    encoder.get_text_model()
    with slots.model_slot():  # another request's model work: these four queue behind it
        threads, results = _search_in_threads(texts)
        _wait_for_waiting(len(texts), results)
    _join(threads)
    assert encodes == [texts[:3]]  # one call, each text once
    for i, text in enumerate(texts):
        alone = encoder.normalize(encoder.get_text_model().encode_texts([text], batch_size=1))[0]
        assert float(np.dot(results[i], alone)) >= 0.9999, text
    assert text_batches._waiting == []


def test_a_text_that_arrives_alone_is_encoded_alone_at_once(one_slot, encodes):
    vector = query_vector_for_text(text="a lonely query")
    assert encodes == [["a lonely query"]]
    assert vector.shape == (encoder.dimension(),)
    assert query_vector_for_text(text="a lonely query") is vector  # remembered: no second encode
    assert len(encodes) == 1


def test_one_encode_takes_at_most_max_batch_texts(one_slot, encodes, monkeypatch):
    monkeypatch.setattr(text_batches, "MAX_BATCH", 2)
    texts = [f"query number {i}" for i in range(5)]
    encoder.get_text_model()
    with slots.model_slot():
        threads, results = _search_in_threads(texts)
        _wait_for_waiting(len(texts), results)
    _join(threads)
    assert sorted(len(call) for call in encodes) == [1, 2, 2]
    assert sorted(t for call in encodes for t in call) == sorted(texts)
    assert all(isinstance(results[i], np.ndarray) for i in range(len(texts)))


def test_a_text_no_slot_holder_takes_is_refused_and_leaves_nothing_waiting(one_slot, encodes):
    one_slot.IMAGESEARCH_MODEL_SLOT_WAIT = 0.05
    encoder.get_text_model()
    with slots.model_slot():
        with pytest.raises(slots.ModelBusy, match="Search is busy right now"):
            query_vector_for_text(text="refused for now")
    assert text_batches._waiting == []
    assert encodes == []


def test_a_failed_encode_reaches_every_request_of_its_batch(one_slot, monkeypatch):
    encoder.get_text_model()

    def failing(texts):
        raise encoder.ModelUnavailable("the model file went away")

    monkeypatch.setattr(encoder, "encode_query_texts", failing)
    with slots.model_slot():
        threads, results = _search_in_threads(["one", "two", "three"])
        _wait_for_waiting(3, results)
    _join(threads)
    assert all(isinstance(results[i], SearchUnavailable) for i in range(3))
    assert all("Search is unavailable" in str(results[i]) for i in range(3))
    assert text_batches._waiting == []
    one_slot.IMAGESEARCH_MODEL_SLOT_WAIT = 0.05
    with slots.model_slot():  # given back after the failure: free at once
        pass
