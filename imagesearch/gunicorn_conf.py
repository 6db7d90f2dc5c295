"""gunicorn settings used by ./run: warm the model in each web process so that the first
search does not wait for it to load."""

import threading


def on_starting(server) -> None:
    """Refuse to start (the master exits with the reason) when the configured vector store cannot
    be served by this database: gunicorn does not run Django's system checks."""
    import django

    django.setup()
    from search.vectorstore import checks

    checks.refuse_unless_usable()


def post_worker_init(worker) -> None:
    def warm() -> None:
        from search import embedding

        try:
            embedding.get_model()
        except Exception:  # noqa: BLE001 - the search page reports an unavailable model itself
            worker.log.warning("the model could not be loaded; search will say so")

    threading.Thread(target=warm, name="warm-model", daemon=True).start()
