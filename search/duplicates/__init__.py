"""Near-duplicate images: the scan that groups them."""
