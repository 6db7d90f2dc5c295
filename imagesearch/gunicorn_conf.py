"""gunicorn settings used by ./run: warm the model in each web process so that the first
search does not wait for it to load."""

import threading


def post_worker_init(worker) -> None:
    def warm() -> None:
        from search import embedding

        try:
            embedding.ensure_models()  # the image model, and the text model of word queries
        except Exception:  # noqa: BLE001 - the search page reports an unavailable model itself
            worker.log.warning("the model could not be loaded; search will say so")

    threading.Thread(target=warm, name="warm-model", daemon=True).start()
