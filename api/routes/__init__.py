"""The API's endpoints, one module per area (registered on :data:`api.app.api` when imported)."""
